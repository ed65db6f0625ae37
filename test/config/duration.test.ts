import t from 'tap'
import { configIssues as issues } from '../fixtures/config.js'
import { parseConfig, parseDuration } from '../../src/config/index.js'

const retention = (value: string): string => `workflows:\n  - { name: wf, module: ./wf.js, retention: ${value} }\n`

t.test('a duration string is a number with a unit', async t => {
  t.equal(parseDuration('250ms'), 250)
  t.equal(parseDuration('90s'), 90_000)
  t.equal(parseDuration('15m'), 900_000)
  t.equal(parseDuration('24h'), 86_400_000)
  t.equal(parseDuration('7d'), 604_800_000)
  t.equal(parseDuration('1.5h'), 5_400_000)
  t.equal(parseDuration(' 2 d '), 172_800_000, 'space around and before the unit is allowed')
  for (const bad of ['soon', '7', '7 days', '-1h', '0s', 'h', '']) t.equal(parseDuration(bad), undefined, `'${bad}' is not a duration`)
})

t.test('workflow retention is parsed into ms by the schema, from a string or a number', async t => {
  t.equal(parseConfig(retention('7d'), {}, 'test.yaml').config.workflows[0]?.retention, 604_800_000)
  t.equal(parseConfig(retention('5000'), {}, 'test.yaml').config.workflows[0]?.retention, 5000)
  t.equal(parseConfig(`workflows:\n  - { name: wf, module: ./wf.js }\n`, {}, 'test.yaml').config.workflows[0]?.retention, undefined, 'unset keeps history')
})

t.test('a retention that is not a duration is reported at its path', async t => {
  const [soon, ...rest] = issues(retention('soon'))
  t.same(rest, [])
  t.equal(soon?.path, 'workflows[0].retention')
  t.match(soon?.message, /'soon' is not a duration.*'7d'/)
  t.same(
    issues(retention('0')).map(i => i.path),
    ['workflows[0].retention'],
    'zero ms is refused as well',
  )
})
