// Sends the calls given as JSON on stdin with Segment's @segment/analytics-node, then flushes.
// Usage: node send_with_analytics_node.mjs <host> <writeKey> < calls.json
// calls.json: [{"method": "track", "params": {...}}, ...], the library's own call parameters.
import { Analytics } from '@segment/analytics-node'

const [host, writeKey] = process.argv.slice(2)
let input = ''
for await (const chunk of process.stdin) input += chunk

const analytics = new Analytics({ writeKey, host, maxRetries: 0 })
const failures = []
analytics.on('error', (err) => failures.push(String(err.reason ?? err.code ?? err)))
for (const { method, params } of JSON.parse(input)) analytics[method](params)
await analytics.closeAndFlush()
if (failures.length > 0) {
  console.error(JSON.stringify(failures))
  process.exit(1)
}
