import type { MessagePort } from 'node:worker_threads'
import * as Comlink from 'comlink'
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs'
import { pino } from 'pino'
import { loadBehavior } from './behavior.js'
import { ActorDirectory } from './directory.js'
import { ActorError } from './errors.js'
import { EventLoopDelay } from './event-loop-delay.js'
import { ActorHost, MAIN_THREAD, type HostedActor, type HostStats, type KernelOp } from './host.js'
import type { LinkRings } from './link.js'
import { MainThreadSystem } from './remote-system.js'
import { describeFailure } from './failure.js'
import { logLevelSchema, type LogLevel } from './system-options.js'

/** What the main thread hands a worker once, as the payload of its long-lived piscina task. */
export interface HostThreadInit {
  readonly threadId: number
  readonly directory: SharedArrayBuffer
  readonly logLevel: LogLevel
  readonly askTimeoutMs: number
  readonly mainPort: MessagePort
  readonly mainRings: LinkRings
  readonly adminPort: MessagePort
  readonly peers: ReadonlyArray<{ readonly thread: number; readonly port: MessagePort; readonly rings: LinkRings }>
}

/** Introspection served over comlink: admin calls only, never on the message path. */
export interface HostAdmin {
  stats(): HostStats
  memory(): NodeJS.MemoryUsage
}

/**
 * The piscina task that turns a pool worker into an actor host. It runs for the worker's whole
 * life: it resolves only when the main thread sends `shutdown`, so piscina never hands this
 * worker another task, and the worker's event loop stays free for the actors' timers and I/O.
 */
export default async function runHostThread(init: HostThreadInit): Promise<void> {
  // Log lines go to the main thread, which writes them to the system logger's own destination:
  // a worker writing to stdout itself would bypass whatever destination the user configured.
  const toMain = { write: (line: string): void => host.link(MAIN_THREAD)?.sendControl({ ctl: 'log', line }) }
  const log = pino({ level: init.logLevel }, toMain).child({ thread: init.threadId })
  let finish!: () => void
  const finished = new Promise<void>(resolve => (finish = resolve))

  const host: ActorHost = new ActorHost({
    threadId: init.threadId,
    directory: new ActorDirectory(init.directory),
    log,
    askTimeoutMs: init.askTimeoutMs,
    system: self => new MainThreadSystem(self),
    onExit: (slot, generation, incarnation, reason, error) =>
      host.tellKernel(MAIN_THREAD, { op: 'exited', slot, generation, incarnation, reason, error: describeFailure(error) }),
    spinAfterSend: 'always',
  })

  host.kernel = {
    async handle(op: KernelOp): Promise<unknown> {
      switch (op.op) {
        case 'spawn': {
          const behavior = await loadBehavior(op['url'] as string, op['exportName'] as string)
          await host.hostActor({
            slot: op['slot'] as number,
            generation: op['generation'] as number,
            incarnation: op['incarnation'] as number,
            name: op['name'] as string | undefined,
            behavior,
            args: op['args'],
            mailboxCapacity: op['mailboxCapacity'] as number,
            shutdownMs: op['shutdownMs'] as number,
          })
          return null
        }
        case 'spawnMany': {
          // One spawnMany's actors: all start, or those that did are stopped and the first failure is thrown.
          const behavior = await loadBehavior(op['url'] as string, op['exportName'] as string)
          const actors = op['actors'] as Array<Omit<HostedActor, 'behavior'>>
          const started = await Promise.allSettled(actors.map(actor => host.hostActor({ ...actor, behavior })))
          const failed = started.find(outcome => outcome.status === 'rejected')
          if (failed === undefined) return null
          await Promise.all(actors.filter((_, i) => started[i]!.status === 'fulfilled').map(actor => host.stopActor(actor.slot, 'shutdown', 0)))
          throw failed.reason
        }
        case 'log_level':
          // The actors' loggers are children of this one and follow its level (pino 7+).
          log.level = logLevelSchema.parse(op['level'])
          return null
        case 'ask_timeout':
          host.setAskTimeout(op['ms'] as number)
          return null
        case 'shutdown':
          // Close after this reply has been flushed to the main thread.
          setImmediate(() => {
            host.close()
            finish()
          })
          return null
        default:
          throw new ActorError('internal', `worker thread ${init.threadId} has no kernel op '${op.op}'`)
      }
    },
  }

  host.addLink(MAIN_THREAD, init.mainPort, init.mainRings)
  for (const { thread, port, rings } of init.peers) host.addLink(thread, port, rings)
  // Sampled by node's timer and read with the stats: nothing on the message path.
  const eventLoop = new EventLoopDelay()
  const admin: HostAdmin = { stats: () => ({ ...host.stats(), eventLoopDelay: eventLoop.read() }), memory: () => process.memoryUsage() }
  Comlink.expose(admin, nodeEndpoint(init.adminPort))
  host.link(MAIN_THREAD)!.sendControl({ ctl: 'ready', thread: init.threadId })

  await finished
  eventLoop.close()
  init.adminPort.close()
}
