// What the tests are given by caddymodule/integration/keycloak_node_test.go,
// which starts caddy-uma (the AS in Keycloak compatibility mode, and
// uma_protect in front of an upstream) and the resource server of
// resource-server.js, then runs `node --test` here.
//
//	KC_SERVER_URL    Keycloak's "auth-server-url": the issuer without /realms/{realm}
//	KC_REALM         the realm (the issuer is KC_SERVER_URL/realms/KC_REALM)
//	KC_RS_CLIENT_ID  the resource server's client (rpt_format keycloak, push_claims)
//	KC_RS_SECRET     its secret
//	KC_APP_CLIENT_ID the requesting party's client (keycloak-js)
//	KC_RS_URL        the keycloak-connect resource server (resource-server.js)
//	KC_API_URL       the API behind uma_protect (as co-hosted, resource_server KC_RS_CLIENT_ID)
//	KC_USER_TOKEN    the requesting party's (bob's) token, for KC_APP_CLIENT_ID
//	KC_TOKEN_URL     where more user tokens come from: POST form sub, email, aud -> {"id_token"}
//	KC_RESOURCES     the ids of alice's registered resources, as JSON {"name": "id"}
import assert from 'node:assert/strict'

function need (name) {
  const v = process.env[name]
  if (!v) {
    throw new Error(`${name} is not set: these tests are run by caddymodule/integration/keycloak_node_test.go (go test -run TestKeycloakNode ./caddymodule/integration/)`)
  }
  return v
}

export const env = {
  serverURL: need('KC_SERVER_URL'),
  realm: need('KC_REALM'),
  rsClientID: need('KC_RS_CLIENT_ID'),
  rsSecret: need('KC_RS_SECRET'),
  appClientID: need('KC_APP_CLIENT_ID'),
  rsURL: need('KC_RS_URL'),
  apiURL: need('KC_API_URL'),
  userToken: need('KC_USER_TOKEN'),
  tokenURL: need('KC_TOKEN_URL'),
  resources: JSON.parse(need('KC_RESOURCES'))
}

// issuer is the realm's URL, as Keycloak's clients build it.
export const issuer = `${env.serverURL}/realms/${env.realm}`

// userToken mints a token for another user at KC_TOKEN_URL.
export async function userToken (sub, email) {
  const res = await fetch(env.tokenURL, {
    method: 'POST',
    body: new URLSearchParams({ sub, email, aud: env.appClientID })
  })
  assert.equal(res.status, 200, `minting a token for ${sub}`)
  return (await res.json()).id_token
}

// claimsOf decodes the payload of a JWT, without checking it.
export function claimsOf (jwt) {
  return JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString())
}

// call sends a request, with a bearer token if given, and returns the
// status, the headers and the body (JSON when it parses).
export async function call (url, { method = 'GET', token, headers = {} } = {}) {
  const h = { ...headers }
  if (token) {
    h.Authorization = `Bearer ${token}`
  }
  const res = await fetch(url, { method, headers: h })
  const text = await res.text()
  let body = text
  try {
    body = JSON.parse(text)
  } catch {}
  return { status: res.status, headers: res.headers, body }
}
