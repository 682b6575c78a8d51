// The two browser APIs that keycloak-js uses and Node 20 lacks, for
// authz.test.js: XMLHttpRequest (keycloak-js/authz sends its token requests
// with it; Node has fetch, which keycloak-js uses for discovery) and
// window.location (Keycloak.init reads the page's URL for a login
// callback). Nothing else of the browser is imitated: keycloak-js itself
// runs unchanged, and every request goes over the network to caddy-uma.

// XMLHttpRequest is the subset keycloak-js/authz uses (open,
// setRequestHeader, send, onreadystatechange, readyState, status,
// responseText), on Node's fetch. Like a browser's, it reports a network
// error as readyState 4 with status 0.
class XMLHttpRequest {
  constructor () {
    this.readyState = 0
    this.status = 0
    this.responseText = ''
    this.onreadystatechange = null
    this._headers = {}
  }

  open (method, url, async) {
    if (async === false) {
      throw new Error('browser.js: synchronous XMLHttpRequest is not supported')
    }
    this._method = method
    this._url = url
    this.readyState = 1
  }

  setRequestHeader (name, value) {
    this._headers[name] = value
  }

  send (body) {
    fetch(this._url, { method: this._method, headers: this._headers, body })
      .then(async (res) => {
        this.status = res.status
        this.responseText = await res.text()
      })
      .catch(() => {
        this.status = 0
        this.responseText = ''
      })
      .finally(() => {
        this.readyState = 4
        if (this.onreadystatechange) {
          this.onreadystatechange()
        }
      })
  }
}

// install puts the shims on globalThis, with pageURL as the page the
// application runs on.
export function install (pageURL) {
  globalThis.XMLHttpRequest = XMLHttpRequest
  globalThis.window = {
    location: new URL(pageURL),
    history: { state: null, replaceState () {} }
  }
  globalThis.window.location.assign = () => {
    throw new Error('browser.js: keycloak-js tried to navigate (a login); these tests give it a token instead')
  }
}
