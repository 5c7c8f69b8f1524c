// The unmodified @sitecore/engage in server mode (initServer), for tests/tracking/test_browser_sdks.py.
//
//   node engage-server.mjs TARGET_URL CLIENT_KEY EMAIL FRIENDLY_ID
//
// Starts a Node HTTP server that, like a site's server-side rendering, handles the browser-id
// cookie (forceServerCookieMode) and sends pageView, identity, a custom event and a
// personalize call for each page it renders. Then it visits itself twice as a browser would:
// the first visit gets the cookie, the second sends it back. Prints one JSON line: each
// visit's cookie and the SDK's answers; exits 1 when the SDK threw.
import http from 'node:http'
import { initServer } from '@sitecore/engage'

const [targetURL, clientKey, email, friendlyId] = process.argv.slice(2)
if (!targetURL || !clientKey || !email || !friendlyId) {
  console.error('usage: node engage-server.mjs TARGET_URL CLIENT_KEY EMAIL FRIENDLY_ID')
  process.exit(2)
}

const engage = initServer({
  clientKey,
  targetURL,
  pointOfSale: 'shop/ie',
  cookieExpiryDays: 365,
  forceServerCookieMode: true,
})

async function render(request, response) {
  await engage.handleCookie(request, response, 5000)
  const page = new URL(request.url, 'http://localhost').pathname
  const base = { channel: 'WEB', currency: 'EUR', language: 'EN', page }
  const view = await engage.pageView(base, request, { rendered: 'server' })
  const identity = page.endsWith('/account')
    ? await engage.identity(
        {
          ...base,
          email,
          firstName: 'Grace',
          lastName: 'Hopper',
          identifiers: [{ id: email, provider: 'email' }],
        },
        request,
      )
    : null
  const custom = await engage.event('SERVER_RENDER', base, request, { template: 'product' })
  const decision = await engage.personalize({ channel: 'WEB', currency: 'EUR', friendlyId }, request, 5000)
  return { view, identity, custom, decision }
}

const server = http.createServer((request, response) => {
  render(request, response).then(
    (answers) => {
      response.setHeader('Content-Type', 'application/json')
      response.end(JSON.stringify(answers))
    },
    (error) => {
      response.statusCode = 500
      response.setHeader('Content-Type', 'application/json')
      response.end(JSON.stringify({ error: String(error && error.stack ? error.stack : error) }))
    },
  )
})

async function visit(base, path, cookie) {
  const answer = await fetch(`${base}${path}`, { headers: cookie ? { cookie } : {} })
  const body = await answer.json()
  return { status: answer.status, setCookie: answer.headers.get('set-cookie'), ...body }
}

server.listen(0, '127.0.0.1', async () => {
  const base = `http://127.0.0.1:${server.address().port}`
  let code = 0
  try {
    const first = await visit(base, '/shoes')
    const cookie = first.setCookie ? first.setCookie.split(';')[0] : null
    const second = await visit(base, '/account', cookie)
    if (first.error || second.error) code = 1
    console.log(JSON.stringify({ version: engage.version, cookie, visits: [first, second] }))
  } catch (error) {
    console.log(JSON.stringify({ error: String(error) }))
    code = 1
  } finally {
    server.close()
    process.exitCode = code
  }
})
