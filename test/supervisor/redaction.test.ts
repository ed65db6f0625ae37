import t from 'tap'
import { pino } from 'pino'
import { RedactingDestination, SECRET_PATHS } from '../../src/supervisor/redaction.js'

/** A destination that keeps what it was written. */
function sink(): { write(line: string): void; lines: string[] } {
  const lines: string[] = []
  return { write: line => void lines.push(line), lines }
}

t.test('configured paths are redacted in every line that holds them, wildcards included', async t => {
  const out = sink()
  const destination = new RedactingDestination(out, ['user.token', '*.secret', 'headers.*'])
  destination.write(`${JSON.stringify({ msg: 'a', user: { token: 't0k', name: 'ann' } })}\n`)
  destination.write(`${JSON.stringify({ msg: 'b', provider: { secret: 's3', url: 'http://x' }, headers: { a: 1, b: 2 } })}\n`)
  t.same(out.lines.map(line => JSON.parse(line)), [
    { msg: 'a', user: { token: '[redacted]', name: 'ann' } },
    { msg: 'b', provider: { secret: '[redacted]', url: 'http://x' }, headers: { a: '[redacted]', b: '[redacted]' } },
  ])
})

t.test('a line that holds no redacted key passes untouched, byte for byte; so does one that is not JSON', async t => {
  const out = sink()
  const destination = new RedactingDestination(out, ['user.token'])
  const plain = '{"msg":"nothing secret","n":1.50}\n'
  destination.write(plain)
  destination.write('not json "token"\n')
  t.same(out.lines, [plain, 'not json "token"\n'])
})

t.test('setPaths changes what is redacted from the next line on', async t => {
  const out = sink()
  const destination = new RedactingDestination(out, [])
  const line = `${JSON.stringify({ msg: 'x', card: { number: '4111' } })}\n`
  destination.write(line)
  destination.setPaths(['card.number'])
  destination.write(line)
  destination.setPaths([])
  destination.write(line)
  t.same(out.lines.map(l => (JSON.parse(l) as { card: { number: string } }).card.number), ['4111', '[redacted]', '4111'])
})

t.test('a worker thread\'s line, written already serialised, has its built-in secrets redacted too', async t => {
  const out = sink()
  const destination = new RedactingDestination(out, [...SECRET_PATHS])
  // As a worker's logger writes it: pino on the worker has no redaction of its own.
  const worker = pino({ level: 'info' }, { write: (line: string) => destination.write(line) })
  worker.info({ provider: { config: { api_key: 'sk-live' } } }, 'provider started')
  t.equal((JSON.parse(out.lines[0]!) as { provider: { config: { api_key: string } } }).provider.config.api_key, '[redacted]')
  t.notMatch(out.lines[0]!, /sk-live/)
})
