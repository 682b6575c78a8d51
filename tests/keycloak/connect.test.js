// keycloak-connect against caddy-uma: the resource server of
// resource-server.js (express + keycloak-connect, a keycloak.json of a
// bearer-only client) protects its routes with protect(), the policy
// enforcer (response_mode permissions and token, pushed claims) and
// hasPermission(). Alice's rules (keycloak_node_test.go) let bob read
// shared-report, and write it when the resource server pushes the claim
// department=finance; private-diary is bob's for nothing.
import { test, after } from 'node:test'
import http from 'node:http'
import assert from 'node:assert/strict'
import Keycloak from 'keycloak-connect'
import { env, issuer, call, claimsOf, userToken } from './env.js'

const bob = env.userToken

// keycloak-connect leaves the body of a refused token request unread, and
// so its connection open (Node's agent keeps connections alive): close
// them, or this process waits for the server's idle timeout.
after(() => http.globalAgent.destroy())

// rptFor asks for an RPT as keycloak-connect's grant manager does for its
// enforcer in response_mode token: the resource server's credentials, the
// audience, permission=RESOURCE#SCOPE and bob's token as subject_token.
// The grant manager verifies the RPT (RS256 against the realm's certs, typ
// Bearer, iss) before it resolves.
function newKeycloak () {
  return new Keycloak({}, {
    realm: env.realm,
    'auth-server-url': env.serverURL + '/',
    resource: env.rsClientID,
    credentials: { secret: env.rsSecret },
    'bearer-only': true
  })
}

async function rptFor (resource, scope) {
  const keycloak = newKeycloak()
  const grant = await keycloak.grantManager.checkPermissions(
    { audience: env.rsClientID, permissions: [{ id: resource, scopes: [scope] }] },
    { headers: { authorization: `Bearer ${bob}` } })
  return grant.access_token
}

test('enforcer, response_mode permissions: bob may read shared-report', async () => {
  const res = await call(`${env.rsURL}/permissions/shared-report`, { token: bob })
  assert.equal(res.status, 200, `body: ${JSON.stringify(res.body)}`)
  const perms = res.body.permissions
  assert.ok(Array.isArray(perms), `permissions: ${JSON.stringify(perms)}`)
  const p = perms.find((p) => p.rsname === 'shared-report')
  assert.ok(p, `no shared-report in ${JSON.stringify(perms)}`)
  assert.ok(p.rsid, 'rsid')
  assert.deepEqual(p.scopes, ['read'])
})

test('enforcer, response_mode permissions: a resource named by its id', async () => {
  const id = env.resources['shared-report']
  const res = await call(`${env.rsURL}/permissions/${id}`, { token: bob })
  assert.equal(res.status, 200, `body: ${JSON.stringify(res.body)}`)
  assert.ok(res.body.permissions.some((p) => p.rsid === id && p.scopes.includes('read')), JSON.stringify(res.body.permissions))
  const denied = await call(`${env.rsURL}/permissions/${env.resources['private-diary']}`, { token: bob })
  assert.equal(denied.status, 403, `body: ${JSON.stringify(denied.body)}`)
})

test('enforcer, response_mode permissions: denied', async (t) => {
  const cases = [
    { name: 'a resource bob has no right to', path: '/permissions/private-diary', token: bob },
    { name: 'an unknown resource', path: '/permissions/no-such-resource', token: bob },
    { name: 'no token', path: '/permissions/shared-report' },
    { name: 'a token that is not a JWT', path: '/permissions/shared-report', token: 'not-a-token' },
    { name: 'another user', path: '/permissions/shared-report', token: await userToken('carol', 'carol@example.org') }
  ]
  for (const c of cases) {
    await t.test(c.name, async () => {
      const res = await call(env.rsURL + c.path, { token: c.token })
      assert.equal(res.status, 403, `body: ${JSON.stringify(res.body)}`)
      assert.equal(res.body, 'Access denied')
    })
  }
})

test('enforcer, response_mode token: the RPT verifies and carries the permission', async () => {
  const allowed = await call(`${env.rsURL}/token/shared-report`, { token: bob })
  assert.equal(allowed.status, 200, `body: ${JSON.stringify(allowed.body)}`)
  const denied = await call(`${env.rsURL}/token/private-diary`, { token: bob })
  assert.equal(denied.status, 403, `body: ${JSON.stringify(denied.body)}`)
})

test('the RPT in Keycloak\'s layout', async () => {
  const rpt = await rptFor('shared-report', 'read')
  assert.equal(rpt.header.alg, 'RS256')
  assert.equal(rpt.content.typ, 'Bearer')
  assert.equal(rpt.content.iss, issuer)
  const perms = rpt.content.authorization && rpt.content.authorization.permissions
  assert.ok(Array.isArray(perms), `authorization.permissions: ${JSON.stringify(rpt.content)}`)
  assert.ok(perms.some((p) => p.rsname === 'shared-report' && p.rsid && p.scopes.includes('read')), JSON.stringify(perms))
  assert.ok(rpt.hasPermission('shared-report', 'read'))
  assert.ok(!rpt.hasPermission('private-diary', 'read'))
})

test('protect(): an RPT of the realm passes, anything else is refused', async (t) => {
  const rpt = (await rptFor('shared-report', 'read')).token
  const parts = rpt.split('.')
  const forged = claimsOf(rpt)
  forged.authorization.permissions.push({ rsid: 'x', rsname: 'private-diary', scopes: ['read'] })
  const tampered = [parts[0], Buffer.from(JSON.stringify(forged)).toString('base64url'), parts[2]].join('.')
  const cases = [
    { name: 'the RPT', token: rpt, status: 200 },
    { name: 'bob\'s token from another issuer', token: bob, status: 403 },
    { name: 'no token', status: 403 },
    { name: 'a tampered RPT', token: tampered, status: 403 },
    { name: 'garbage', token: 'a.b.c', status: 403 }
  ]
  for (const c of cases) {
    await t.test(c.name, async () => {
      const res = await call(`${env.rsURL}/protect`, { token: c.token })
      assert.equal(res.status, c.status, `body: ${JSON.stringify(res.body)}`)
      if (c.status === 200) {
        assert.equal(res.body.sub, claimsOf(rpt).sub)
      }
    })
  }
})

test('hasPermission() reads authorization.permissions of the RPT', async (t) => {
  const rpt = (await rptFor('shared-report', 'read')).token
  const cases = [
    { path: '/has/shared-report/read', status: 200 },
    { path: '/has/shared-report/write', status: 403 },
    { path: '/has/private-diary/read', status: 403 }
  ]
  for (const c of cases) {
    await t.test(c.path, async () => {
      const res = await call(env.rsURL + c.path, { token: rpt })
      assert.equal(res.status, c.status, `body: ${JSON.stringify(res.body)}`)
    })
  }
})

test('enforcer with an RPT as bearer: decided from the token, or asked again', async () => {
  const rpt = (await rptFor('shared-report', 'read')).token
  const fromToken = await call(`${env.rsURL}/permissions/shared-report`, { token: rpt })
  assert.equal(fromToken.status, 200, `body: ${JSON.stringify(fromToken.body)}`)
  assert.equal(fromToken.body.permissions, null, 'the enforcer asked the server although the RPT had the permission')
  // Not in the RPT: the enforcer sends the RPT as subject_token, and the
  // server still says no.
  const other = await call(`${env.rsURL}/permissions/private-diary`, { token: rpt })
  assert.equal(other.status, 403, `body: ${JSON.stringify(other.body)}`)
})

test('enforcer with pushed claims (claim_token_format urn:ietf:params:oauth:token-type:jwt)', async (t) => {
  // The claim token is standard base64 (with + and / for some values, as
  // this purpose gives), which Keycloak decodes as it decodes base64url.
  const cases = [
    { name: 'department finance may write', department: 'finance', purpose: 'audit', status: 200 },
    { name: 'department finance, a claim token with + and /', department: 'finance', purpose: 'review ~?~?~?', status: 200 },
    { name: 'department sales may not', department: 'sales', purpose: 'audit', status: 403 },
    { name: 'another user of department finance may not', department: 'finance', purpose: 'audit', token: await userToken('carol', 'carol@example.org'), status: 403 }
  ]
  for (const c of cases) {
    await t.test(c.name, async () => {
      const res = await call(`${env.rsURL}/claims/shared-report`, { method: 'POST', token: c.token || bob, headers: { 'X-Department': c.department, 'X-Purpose': c.purpose } })
      assert.equal(res.status, c.status, `body: ${JSON.stringify(res.body)}`)
    })
  }
})

test('validateAccessToken() introspects on Keycloak\'s path', async (t) => {
  const rpt = (await rptFor('shared-report', 'read')).token
  const cases = [
    { name: 'an RPT', token: rpt, active: true },
    { name: 'a user token of another issuer', token: bob, active: false },
    { name: 'garbage', token: 'not-a-token', active: false }
  ]
  for (const c of cases) {
    await t.test(c.name, async () => {
      const result = await newKeycloak().grantManager.validateAccessToken(c.token)
      assert.equal(result !== false, c.active, `validateAccessToken: ${result}`)
    })
  }
})
