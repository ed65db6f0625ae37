import fc from 'fast-check'
import t from 'tap'
import { CircuitBreaker } from '../../src/stack/circuit-breaker.js'

const SETTINGS = { failureThreshold: 3, backoffMs: 1000, maxBackoffMs: 8000 }

t.test('closed asks every time; the threshold of failures in a row opens it', async t => {
  const breaker = new CircuitBreaker(SETTINGS)
  t.ok(breaker.tryAsk(0))
  breaker.failure(0)
  breaker.failure(1)
  t.equal(breaker.state, 'closed', 'two failures in a row are not three')
  t.ok(breaker.tryAsk(2))
  breaker.success()
  breaker.failure(3)
  breaker.failure(4)
  t.equal(breaker.state, 'closed', 'a success between failures starts the count again')
  breaker.failure(5)
  t.equal(breaker.state, 'open')
  t.equal(breaker.retryAt, 1005)
  t.match(breaker.view(), { state: 'open', consecutive_failures: 3, opened_at: new Date(5).toISOString(), retry_at: new Date(1005).toISOString() })
})

t.test('open asks nothing until its time; then one half-open ask; a success closes it', async t => {
  const breaker = new CircuitBreaker({ ...SETTINGS, failureThreshold: 1 })
  breaker.failure(0)
  t.notOk(breaker.tryAsk(999), 'not before retryAt')
  t.ok(breaker.tryAsk(1000), 'half-open at retryAt')
  t.equal(breaker.state, 'half_open')
  t.notOk(breaker.tryAsk(1001), 'one half-open ask at a time')
  breaker.success()
  t.equal(breaker.state, 'closed')
  t.equal(breaker.retryAt, 0)
  t.match(breaker.view(), { state: 'closed', consecutive_failures: 0, opened_at: null, retry_at: null })
})

t.test('each failed half-open ask doubles the wait, up to the maximum; a success resets it', async t => {
  const breaker = new CircuitBreaker({ ...SETTINGS, failureThreshold: 1 })
  let now = 0
  breaker.failure(now)
  const waits: number[] = []
  for (let i = 0; i < 6; i++) {
    const wait = breaker.retryAt - now
    waits.push(wait)
    now += wait
    t.ok(breaker.tryAsk(now))
    breaker.failure(now)
  }
  t.same(waits, [1000, 2000, 4000, 8000, 8000, 8000])
  now = breaker.retryAt
  t.ok(breaker.tryAsk(now))
  breaker.success()
  breaker.failure(now)
  t.equal(breaker.retryAt - now, 1000, 'after closing, the next opening starts from the first wait')
})

t.test('property: an open breaker never lets an ask through before its retry time, and never waits past the maximum', async () => {
  const event = fc.oneof(fc.record({ kind: fc.constant('ask' as const), after: fc.nat(20_000) }), fc.record({ kind: fc.constantFrom('success' as const, 'failure' as const), after: fc.nat(5_000) }))
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5000 }), fc.array(event, { maxLength: 60 }), (threshold, backoffMs, events) => {
      const maxBackoffMs = backoffMs * 4
      const breaker = new CircuitBreaker({ failureThreshold: threshold, backoffMs, maxBackoffMs })
      let now = 0
      let asking = false
      for (const e of events) {
        now += e.after
        if (e.kind === 'ask') {
          const openBefore = breaker.state === 'open' ? breaker.retryAt : 0
          const allowed = breaker.tryAsk(now)
          if (allowed && openBefore > now) return false
          if (allowed && asking) return false
          if (allowed && breaker.state === 'half_open') asking = true
        } else if (e.kind === 'success') {
          breaker.success()
          asking = false
        } else {
          breaker.failure(now)
          asking = false
          if (breaker.state === 'open' && breaker.retryAt - now > maxBackoffMs) return false
        }
      }
      return true
    }),
  )
})
