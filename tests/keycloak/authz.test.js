// keycloak-js's authorization client (keycloak-js/authz, KeycloakAuthorization)
// against caddy-uma: entitlement() asks for permissions without a ticket,
// authorize() redeems the ticket of uma_protect's 401 challenge; the RPT
// then opens the API behind uma_protect. The Keycloak instance is the real
// class, initialized as an application does (its discovery goes to
// caddy-uma); its token is bob's, set as a login would set it.
//
// keycloak-js is built for browsers: browser.js gives Node the two browser
// APIs it uses and Node lacks (XMLHttpRequest, on Node's fetch, and
// window.location); the library's code runs unchanged.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { install } from './browser.js'
import { env, issuer, call, claimsOf, userToken } from './env.js'

install('http://127.0.0.1:1/app')
const { default: Keycloak } = await import('keycloak-js')
const { default: KeycloakAuthorization } = await import('keycloak-js/authz')

// newAuthorization returns a KeycloakAuthorization of demo-app for the
// user whose token is given.
async function newAuthorization (token) {
  const keycloak = new Keycloak({ url: env.serverURL, realm: env.realm, clientId: env.appClientID })
  await keycloak.init({ checkLoginIframe: false })
  keycloak.token = token
  return new KeycloakAuthorization(keycloak)
}

// outcome runs one request of KeycloakAuthorization (its then takes a grant,
// a deny and an error callback) and says which was called.
function outcome (request) {
  return new Promise((resolve) => {
    request.then(
      (rpt) => resolve({ granted: rpt }),
      () => resolve({ denied: true }),
      (err) => resolve({ error: err || true }))
  })
}

// challenge calls the API without a token and returns the ticket of its
// UMA challenge (GET asks for read, POST for write).
async function challenge (path, method = 'GET') {
  const res = await call(env.apiURL + path, { method })
  assert.equal(res.status, 401, `${path} without a token: ${JSON.stringify(res.body)}`)
  const header = res.headers.get('www-authenticate')
  assert.match(header, /^UMA /)
  assert.ok(header.includes(`as_uri="${issuer}"`), header)
  const ticket = /ticket="([^"]+)"/.exec(header)
  assert.ok(ticket, header)
  return ticket[1]
}

function permissionsOf (rpt) {
  const claims = claimsOf(rpt)
  assert.ok(claims.authorization && Array.isArray(claims.authorization.permissions), `authorization.permissions: ${JSON.stringify(claims)}`)
  return claims.authorization.permissions
}

before(async () => {
  // uma_protect registers alice's albums when it first sees them.
  await challenge('/albums/alice/holiday-photos')
  await challenge('/albums/alice/secret-album')
})

test('discovery: the realm\'s uma2-configuration', async () => {
  const res = await call(`${issuer}/.well-known/uma2-configuration`)
  assert.equal(res.status, 200)
  assert.equal(res.body.issuer, issuer)
  assert.ok(res.body.token_endpoint)
})

test('entitlement() with a permission: granted', async () => {
  const authz = await newAuthorization(env.userToken)
  const r = await outcome(authz.entitlement(env.rsClientID, { permissions: [{ id: 'shared-report', scopes: ['read'] }] }))
  assert.ok(r.granted, `entitlement: ${JSON.stringify(r)}`)
  assert.equal(authz.rpt, r.granted)
  const p = permissionsOf(r.granted).find((p) => p.rsname === 'shared-report')
  assert.ok(p && p.rsid && p.scopes.includes('read'), JSON.stringify(permissionsOf(r.granted)))
})

test('entitlement() without permissions: all of bob\'s', async () => {
  const authz = await newAuthorization(env.userToken)
  const r = await outcome(authz.entitlement(env.rsClientID))
  assert.ok(r.granted, `entitlement: ${JSON.stringify(r)}`)
  const names = permissionsOf(r.granted).map((p) => p.rsname).sort()
  assert.deepEqual(names, ['holiday-photos', 'shared-report'])
})

test('entitlement() refused', async (t) => {
  const cases = [
    { name: 'a resource bob has no right to', token: env.userToken, permissions: [{ id: 'private-diary', scopes: ['read'] }] },
    { name: 'a scope bob has no right to', token: env.userToken, permissions: [{ id: 'holiday-photos', scopes: ['write'] }] },
    { name: 'another user', token: await userToken('carol', 'carol@example.org'), permissions: [{ id: 'shared-report', scopes: ['read'] }] }
  ]
  for (const c of cases) {
    await t.test(c.name, async () => {
      const authz = await newAuthorization(c.token)
      const r = await outcome(authz.entitlement(env.rsClientID, { permissions: c.permissions }))
      assert.ok(r.denied, `entitlement: ${JSON.stringify(r)}`)
      assert.equal(authz.rpt, null)
    })
  }
})

test('authorize() with the ticket of uma_protect\'s challenge, then the API', async () => {
  const authz = await newAuthorization(env.userToken)
  const r = await outcome(authz.authorize({ ticket: await challenge('/albums/alice/holiday-photos') }))
  assert.ok(r.granted, `authorize: ${JSON.stringify(r)}`)
  assert.ok(permissionsOf(r.granted).some((p) => p.rsname === 'holiday-photos' && p.scopes.includes('read')), JSON.stringify(permissionsOf(r.granted)))
  const api = await call(`${env.apiURL}/albums/alice/holiday-photos`, { token: r.granted })
  assert.equal(api.status, 200, `the API with the RPT: ${JSON.stringify(api.body)}`)
  assert.equal(api.body.trim(), 'the album')
  // The RPT opens this album only: another answers with a new ticket,
  // which a second authorize() redeems together with the RPT it holds
  // (incremental authorization); what bob may not have is still refused.
  const other = await call(`${env.apiURL}/albums/alice/secret-album`, { token: r.granted })
  assert.ok(other.status === 401 || other.status === 403, `another album with the RPT: ${other.status} ${JSON.stringify(other.body)}`)
  const ticket = /ticket="([^"]+)"/.exec(other.headers.get('www-authenticate') || '')
  assert.ok(ticket, `no ticket in ${other.headers.get('www-authenticate')}`)
  const again = await outcome(authz.authorize({ ticket: ticket[1] }))
  assert.ok(again.denied, `authorize secret-album: ${JSON.stringify(again)}`)
  assert.equal(authz.rpt, r.granted)
})

test('authorize() refused', async (t) => {
  const cases = [
    { name: 'a resource bob has no right to', token: env.userToken, path: '/albums/alice/secret-album' },
    { name: 'another user', token: await userToken('carol', 'carol@example.org'), path: '/albums/alice/holiday-photos' },
    { name: 'a ticket that is not one', token: env.userToken, ticket: 'no-such-ticket' }
  ]
  for (const c of cases) {
    await t.test(c.name, async () => {
      const authz = await newAuthorization(c.token)
      const r = await outcome(authz.authorize({ ticket: c.ticket || await challenge(c.path) }))
      assert.ok(r.denied, `authorize: ${JSON.stringify(r)}`)
      assert.equal(authz.rpt, null)
    })
  }
})

test('authorize() with a bad user token is an error, not a grant', async (t) => {
  for (const [name, token] of Object.entries({ 'no token': undefined, garbage: 'a.b.c', 'a tampered token': env.userToken.slice(0, -4) + 'AAAA' })) {
    await t.test(name, async () => {
      const authz = await newAuthorization(token)
      const r = await outcome(authz.authorize({ ticket: await challenge('/albums/alice/holiday-photos') }))
      assert.ok(r.error, `authorize: ${JSON.stringify(r)}`)
      assert.equal(authz.rpt, null)
    })
  }
})

test('authorize() with submitRequest: alice is asked, and the resource server sees the request', async () => {
  const authz = await newAuthorization(env.userToken)
  const r = await outcome(authz.authorize({ ticket: await challenge('/albums/alice/holiday-photos', 'POST'), submitRequest: true }))
  assert.ok(r.denied, `authorize: ${JSON.stringify(r)}`)

  // The resource server lists the pending requests (Keycloak's permission
  // ticket API, with a PAT of its client credentials).
  const pat = await fetch(`${issuer}/protocol/openid-connect/token`, {
    method: 'POST',
    headers: { Authorization: 'Basic ' + Buffer.from(`${env.rsClientID}:${env.rsSecret}`).toString('base64') },
    body: new URLSearchParams({ grant_type: 'client_credentials' })
  }).then((res) => res.json())
  assert.ok(pat.access_token, JSON.stringify(pat))
  const pending = await call(`${issuer}/authz/protection/permission/ticket?granted=false&returnNames=true`, { token: pat.access_token })
  assert.equal(pending.status, 200, JSON.stringify(pending.body))
  assert.ok(pending.body.some((tk) => tk.resourceName === 'holiday-photos' && tk.scopeName === 'write' && !tk.granted),
    `no pending request of bob for holiday-photos#write in ${JSON.stringify(pending.body)}`)
})
