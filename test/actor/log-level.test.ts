// ActorSystem.setLogLevel and setAskTimeout: one setting for the main thread and every worker, now and later.
import t from 'tap'
import { capturingLogger } from '../fixtures/logger.js'
import { eventually } from '../fixtures/eventually.js'
import { startSystem } from '../fixtures/system.js'
import { ledger, type LedgerMessage } from '../fixtures/restart-behaviors.js'
import type { ActorRef } from '../../src/index.js'

t.test('setLogLevel changes what actors log on the main thread and on every worker, also those started later', async t => {
  const { logger, records } = capturingLogger('info')
  const system = await startSystem(t, { logger })
  const texts = (): unknown[] => records.map(record => record['text'])
  /**
   * Logs `text` at debug, then a warn marker; lines from one thread arrive in order, so once
   * the marker is in, the debug line is too if it was written at all.
   */
  const logged = async (ref: ActorRef<LedgerMessage>, text: string): Promise<boolean> => {
    await ref.ask({ type: 'log', level: 'debug', text })
    await ref.ask({ type: 'log', level: 'warn', text: `${text}:marker` })
    await eventually(() => texts().includes(`${text}:marker`), `the marker after ${text}`)
    return texts().includes(text)
  }

  const onPool: ActorRef<LedgerMessage> = await system.spawn(ledger, { placement: 'pool' })
  const onMain: ActorRef<LedgerMessage> = await system.spawn(ledger, { placement: 'main' })
  t.notOk(await logged(onPool, 'pool-at-info'), 'at info, a pool actor logs no debug line')
  t.notOk(await logged(onMain, 'main-at-info'), 'nor does one on the main thread')

  await system.setLogLevel('debug')
  t.equal(logger.level, 'debug', 'the system logger is at debug')
  t.ok(await logged(onPool, 'pool-at-debug'), 'at debug, the pool actor logs its debug line')
  t.ok(await logged(onMain, 'main-at-debug'), 'and so does the one on the main thread')
  const later: ActorRef<LedgerMessage> = await system.spawn(ledger, { placement: 'dedicated' })
  t.ok(await logged(later, 'dedicated-at-debug'), 'a worker started after the change starts at debug')

  await system.setLogLevel('warn')
  for (const [ref, where] of [[onPool, 'pool'], [onMain, 'main'], [later, 'dedicated']] as const) {
    t.notOk(await logged(ref, `${where}-at-warn`), `at warn, the ${where} actor logs no debug line`)
  }
})

t.test('setLogLevel refuses a level pino does not know, naming it', async t => {
  const system = await startSystem(t, { workers: 0 })
  await t.rejects(system.setLogLevel('loud' as never), { name: 'TypeError', message: /setLogLevel\(level\)/ })
})

t.test('setAskTimeout changes the default deadline of asks on the main thread and on every worker, also those started later', async t => {
  const system = await startSystem(t, { askTimeoutMs: 10_000 })
  const slow: ActorRef<LedgerMessage> = await system.spawn(ledger, { placement: 'pool' })
  const onPool: ActorRef<LedgerMessage> = await system.spawn(ledger, { placement: 'pool' })
  await system.setAskTimeout(100)
  await t.rejects(slow.ask({ type: 'slow', ms: 1000 }), { code: 'timeout' }, 'an ask from the main thread without its own timeout uses the new default')
  await t.rejects(onPool.ask({ type: 'forward', to: slow, msg: { type: 'slow', ms: 1000 } }, { timeoutMs: 5000 }), { code: 'timeout' }, 'so does one from a pool actor')
  const later: ActorRef<LedgerMessage> = await system.spawn(ledger, { placement: 'dedicated' })
  await t.rejects(later.ask({ type: 'forward', to: slow, msg: { type: 'slow', ms: 1000 } }, { timeoutMs: 5000 }), { code: 'timeout' }, 'and one from a worker started after the change')
  t.equal(await slow.ask({ type: 'slow', ms: 300 }, { timeoutMs: 5000 }), 'slow done', 'an ask with its own timeout keeps it')
  await t.rejects(system.setAskTimeout(0), TypeError)
})
