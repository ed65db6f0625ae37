import t from 'tap'
import { measure, type Subject } from '../../bench/harness.js'

const subject: Subject = { name: 'x_tput', unit: 'ops/s', baseline: 'raw', better: 'higher' }

t.test('the ratio pairs each round with its own baseline', async t => {
  // Two rounds at full speed, one at half: troupe does 0.8, 0.9 and 0.7 of its baseline.
  const rounds = [
    { value: 80, baseline: 100 },
    { value: 45, baseline: 50 },
    { value: 70, baseline: 100 },
  ]
  let next = 0
  const [result] = await measure([subject], rounds.length, 0, async () => [rounds[next++]!])
  t.equal(result!.value, 70, 'value is the median figure')
  t.equal(result!.baseline_value, 100, 'baseline is the median baseline')
  t.equal(result!.ratio, 0.8, 'the median of 0.8, 0.9 and 0.7, where the medians would give 0.7')
  t.same(result!.spread.ratio, [0.7, 0.9])
  t.same(result!.spread.value, [45, 80])
})

t.test('warm-up rounds are run and not recorded', async t => {
  const seen: number[] = []
  let call = 0
  const [result] = await measure([subject], 3, 2, async () => {
    call++
    seen.push(call)
    return [{ value: call <= 2 ? 1 : 10, baseline: 10 }]
  })
  t.same(seen, [1, 2, 3, 4, 5])
  t.equal(result!.ratio, 1)
  t.equal(result!.rounds, 3)
})
