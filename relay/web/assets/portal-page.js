// Device portal page: asks the relay for a signed portal link and shows the device's web UI in the iframe,
// with the device's name and live connection status. The access token lives in sessionStorage
// ("tether.token"), where the console keeps it too.
const TOKEN_KEY = 'tether.token'
const STATUS_POLL_MS = 5000

const $ = (id) => document.getElementById(id)
const [, , , device, , proxy] = location.pathname.split('/').map(decodeURIComponent)
const query = new URLSearchParams(location.search)

/** The user named in a JWT access token. */
function tokenUser(token) {
  try {
    return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).usr
  } catch {
    return undefined
  }
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: {
      authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  })
  const data = res.status === 204 ? undefined : await res.json().catch(() => undefined)
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY)
    showLogin('Your session has ended; sign in again.')
    throw new Error('unauthorized')
  }
  if (!res.ok) throw new Error(data?.error?.message ?? `HTTP ${res.status}`)
  return data
}

function showMessage(text) {
  $('message').textContent = text
  $('message').hidden = !text
}

function showLogin(error = '') {
  $('login').hidden = false
  $('portal').hidden = true
  $('login-error').textContent = error
}

$('login').addEventListener('submit', async (event) => {
  event.preventDefault()
  const form = new FormData(event.target)
  const res = await fetch('/oauth/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      grant_type: 'password',
      username: form.get('username'),
      password: form.get('password'),
    }),
  })
  const data = await res.json().catch(() => ({}))
  if (!res.ok) return showLogin(data?.error?.message ?? 'Sign-in failed')
  sessionStorage.setItem(TOKEN_KEY, data.access_token)
  $('login').hidden = true
  start()
})

const user = () => query.get('user') ?? tokenUser(sessionStorage.getItem(TOKEN_KEY) ?? '')
const devicePath = () => `/v1/users/${encodeURIComponent(user())}/devices/${encodeURIComponent(device)}`

/** Shows the device's name and whether its agent is connected. */
async function refreshStatus() {
  const info = await api('GET', devicePath())
  const online = info.connection?.active === true
  $('title').textContent = `${info.name || info.device} · ${proxy}`
  document.title = `${info.name || info.device} · Tether portal`
  $('status').textContent = online ? 'connected' : 'disconnected'
  $('status').className = `status ${online ? 'online' : 'offline'}`
  $('status').dataset.state = online ? 'online' : 'offline'
}

/** Asks for a fresh signed link and loads it in the iframe. */
const newLink = () => api('POST', `${devicePath()}/proxies/${encodeURIComponent(proxy)}/portal`, {})

async function openPortal() {
  const link = await newLink()
  $('portal').src = link.url
  $('portal').hidden = false
  $('newtab').disabled = false
  $('reload').disabled = false
  $('portal').dataset.origin = link.origin
  showMessage('')
}

async function start() {
  if (!sessionStorage.getItem(TOKEN_KEY)) return showLogin()
  try {
    await refreshStatus()
    await openPortal()
  } catch (err) {
    if (err.message !== 'unauthorized') showMessage(err.message)
    return
  }
  setInterval(() => refreshStatus().catch(() => {}), STATUS_POLL_MS)
}

// Links are single-use, so a new tab gets its own (the window opens first: popup blockers want a click).
$('newtab').addEventListener('click', () => {
  const tab = window.open('about:blank', '_blank')
  newLink().then(
    (link) => {
      tab.opener = null
      tab.location = link.url
    },
    (err) => {
      tab.close()
      showMessage(err.message)
    },
  )
})
$('reload').addEventListener('click', () => openPortal().catch((err) => showMessage(err.message)))
start()
