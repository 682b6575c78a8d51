// A resource server written for Keycloak: express with keycloak-connect,
// configured as a keycloak.json of a bearer-only client, unchanged but for
// the server URL, which is caddy-uma's (its issuer is {url}/realms/{realm}
// with keycloak_compat). caddymodule/integration/keycloak_node_test.go
// starts it as its own process; the tests in connect.test.js call it.
//
// Environment: KC_SERVER_URL (auth-server-url), KC_REALM, KC_RS_CLIENT_ID,
// KC_RS_SECRET, and PORT (0: any free port). It prints "listening on
// <port>" once it serves.
import express from 'express'
import Keycloak from 'keycloak-connect'

const env = (name) => {
  const v = process.env[name]
  if (v === undefined || v === '') {
    console.error(`resource-server: ${name} is not set`)
    process.exit(2)
  }
  return v
}

// What the Keycloak admin console's "Installation" tab gives for a
// confidential, bearer-only client.
const keycloakJSON = {
  realm: env('KC_REALM'),
  'auth-server-url': env('KC_SERVER_URL') + '/',
  'ssl-required': 'external',
  resource: env('KC_RS_CLIENT_ID'),
  credentials: { secret: env('KC_RS_SECRET') },
  'bearer-only': true,
  'confidential-port': 0
}

const keycloak = new Keycloak({}, keycloakJSON)
const app = express()
app.use(keycloak.middleware())

// What the request was let through with: the subject of the bearer token
// keycloak-connect verified (protect, or an enforcer that found the
// permission in the token), and the permissions an enforcer got from the
// server (response_mode permissions).
const granted = (req, res) => {
  const token = req.kauth && req.kauth.grant && req.kauth.grant.access_token
  res.json({
    ok: true,
    sub: token ? token.content.sub : null,
    permissions: req.permissions || null
  })
}

// protect(): any valid access token of the realm (an RPT here).
app.get('/protect', keycloak.protect(), granted)

// protect() with a guard that reads the RPT's authorization.permissions.
app.get('/has/:resource/:scope', keycloak.protect((token, req) => token.hasPermission(req.params.resource, req.params.scope)), granted)

// The policy enforcer, asking the server for the resource named in the
// path, with the scope of the method. Enforcer permissions are fixed per
// route, as in Keycloak's examples, so the middleware is built per name.
const perName = (make) => {
  const cache = new Map()
  return (req, res, next) => {
    const name = req.params.name
    if (!cache.has(name)) {
      cache.set(name, make(name))
    }
    return cache.get(name)(req, res, next)
  }
}

// response_mode permissions (the default).
app.get('/permissions/:name', perName((name) => keycloak.enforcer(`${name}:read`, { response_mode: 'permissions' })), granted)

// response_mode token: the server's answer is an RPT, verified by
// keycloak-connect (RS256 against the realm's certs, typ Bearer, iss) and
// read with hasPermission.
app.get('/token/:name', perName((name) => keycloak.enforcer(`${name}:read`, { response_mode: 'token' })), granted)

// Pushed claims: the enforcer sends claim_token (JSON in standard base64,
// Buffer's 'base64', which Keycloak reads as it reads base64url) with
// claim_token_format urn:ietf:params:oauth:token-type:jwt.
app.post('/claims/:name', perName((name) => keycloak.enforcer(`${name}:write`, {
  claims: (req) => ({
    department: [req.get('X-Department') || 'none'],
    purpose: [req.get('X-Purpose') || 'none']
  })
})), granted)

const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  console.log(`listening on ${server.address().port}`)
})
