// Sends calls through the unmodified @segment/analytics-node, for tests/tracking/test_sdks.py.
//
//   node send.js HOST WRITE_KEY CALLS_JSON
//
// CALLS_JSON is a list of {"method": "track" | "identify" | ..., "params": {...}}, each params
// object exactly what the SDK's method takes. Prints one JSON line: the HTTP requests the SDK
// made ({path, status, contentEncoding, authorization}) and the errors it reported; exits 1
// when there were errors.
'use strict'

const { Analytics } = require('@segment/analytics-node')

async function main() {
  const [host, writeKey, callsJson] = process.argv.slice(2)
  if (!host || !writeKey || !callsJson) {
    console.error('usage: node send.js HOST WRITE_KEY CALLS_JSON')
    process.exit(2)
  }
  const calls = JSON.parse(callsJson)
  const analytics = new Analytics({
    writeKey,
    host,
    // All calls in one batch, sent when the last is queued; a failure is reported at once
    // rather than retried for hours.
    flushAt: calls.length,
    flushInterval: 60000,
    maxRetries: 0,
    httpRequestTimeout: 5000,
  })

  const errors = []
  const requests = []
  // The headers of requests in flight, oldest first: the SDK sends one batch at a time.
  const inFlight = []
  analytics.on('error', (error) => {
    errors.push(`${error.code}: ${error.reason}`)
  })
  analytics.on('http_request', ({ headers }) => {
    inFlight.push(headers)
  })
  analytics.on('http_response', ({ url, status }) => {
    const headers = inFlight.shift() || {}
    requests.push({
      path: new URL(url).pathname,
      status,
      contentEncoding: headers['Content-Encoding'] || null,
      authorization: (headers.Authorization || '').split(' ')[0] || null,
    })
  })

  for (const { method, params } of calls) {
    analytics[method](params, (error) => {
      if (error) errors.push(`${method}: ${error}`)
    })
  }
  await analytics.closeAndFlush({ timeout: 15000 })

  process.stdout.write(JSON.stringify({ requests, errors }) + '\n')
  process.exitCode = errors.length ? 1 : 0
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
