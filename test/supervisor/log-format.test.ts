import t from 'tap'
import { createCliLogger, logFormatOf, type LogFormat } from '../../src/supervisor/log-format.js'

/** The CLI's log format: pretty for a terminal, JSON otherwise, TROUPE_LOG_FORMAT over both; secrets censored in each. */

t.test('TROUPE_LOG_FORMAT decides; without it a terminal gets pretty lines and anything else JSON', async t => {
  t.equal(logFormatOf({}, true), 'pretty')
  t.equal(logFormatOf({}, false), 'json')
  t.equal(logFormatOf({ TROUPE_LOG_FORMAT: '' }, true), 'pretty', 'an empty variable is unset')
  t.equal(logFormatOf({ TROUPE_LOG_FORMAT: 'json' }, true), 'json', 'json on a terminal when asked')
  t.equal(logFormatOf({ TROUPE_LOG_FORMAT: 'pretty' }, false), 'pretty', 'pretty into a pipe when asked')
  t.equal(logFormatOf({ TROUPE_LOG_FORMAT: 'yaml' }, false), undefined, 'anything else is refused')
})

/** The lines a CLI logger in `format` writes for a main-thread line and a worker's, both holding secrets. */
async function written(format: LogFormat): Promise<string> {
  let text = ''
  const { log, redaction } = await createCliLogger({ level: 'info', format, redact: ['card.number'], out: { write: (line: string) => void (text += line) } })
  log.info({ provider: { config: { api_key: 'sk-main-secret' } }, card: { number: '4111-main' } }, 'main thread line')
  // A worker thread's line reaches the destination already serialised.
  redaction.write(`${JSON.stringify({ level: 40, time: 0, msg: 'worker line', authorization: 'Bearer tr-worker-secret', card: { number: '4111-worker' } })}\n`)
  return text
}

t.test('JSON: one object a line, every secret censored', async t => {
  const text = await written('json')
  const lines = text.trimEnd().split('\n').map(line => JSON.parse(line) as Record<string, any>)
  t.equal(lines.length, 2)
  t.match(lines[0], { msg: 'main thread line', provider: { config: { api_key: '[redacted]' } }, card: { number: '[redacted]' } })
  t.match(lines[1], { msg: 'worker line', authorization: '[redacted]', card: { number: '[redacted]' } })
  t.notMatch(text, /sk-main-secret|4111-|tr-worker-secret/)
})

t.test('pretty: lines for a person, every secret censored alike', async t => {
  const text = await written('pretty')
  t.notOk(text.split('\n').some(line => line.startsWith('{')), 'no line is a JSON object')
  t.match(text, /INFO.*main thread line/)
  t.match(text, /WARN.*worker line/)
  t.match(text, /"api_key": "\[redacted\]"/)
  t.match(text, /authorization: "\[redacted\]"/)
  t.notMatch(text, /sk-main-secret|4111-|tr-worker-secret/)
})
