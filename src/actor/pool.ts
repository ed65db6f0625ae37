import { MessageChannel, type MessagePort, type ResourceLimits } from 'node:worker_threads'
import * as Comlink from 'comlink'
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs'
import { Piscina } from 'piscina'
import { ActorError } from './errors.js'
import type { ActorHost, HostStats, KernelOp } from './host.js'
import { createLinkRings, type LinkRings } from './link.js'
import { withTimeout } from './timeout.js'
import type { LogLevel } from './system-options.js'
import type { HostAdmin, HostThreadInit } from './worker-host.js'

/** How long a worker gets to answer an admin call or a shutdown before it is counted as stuck. */
const ADMIN_TIMEOUT_MS = 2000

export type ThreadKind = 'pool' | 'dedicated'

/** Under tsx (tests, examples) the host module is TypeScript; once built it is JavaScript. */
const HOST_MODULE = new URL(import.meta.url.endsWith('.ts') ? './worker-host.ts' : './worker-host.js', import.meta.url).href

/** One worker thread hosting actors. */
export class HostThread {
  /** Actors placed here, for least-loaded placement. */
  actors = 0
  ready = false
  /** Being retired by a shrink of the pool: takes no new actors while its own move away. */
  retiring = false

  constructor(
    readonly threadId: number,
    readonly kind: ThreadKind,
    readonly piscina: Piscina,
    private readonly admin: Comlink.Remote<HostAdmin>,
    private readonly adminPort: MessagePort,
  ) {}

  /** comlink has no timeouts and a dead worker never answers: bound every admin call. */
  stats(): Promise<HostStats> {
    return withTimeout(this.admin.stats(), ADMIN_TIMEOUT_MS, `stats from thread ${this.threadId}`)
  }

  closeAdmin(): void {
    this.admin[Comlink.releaseProxy]()
    this.adminPort.close()
  }
}

export interface WorkerThreadsOptions {
  readonly host: ActorHost
  /** The level workers start with; setLogLevel changes it for the live ones and those started later. */
  readonly logLevel: LogLevel
  readonly askTimeoutMs: number
  readonly resourceLimits: ResourceLimits | undefined
  /** Node flags for the worker threads; by default they inherit this process's. */
  readonly execArgv: readonly string[] | undefined
  /** A worker died (exit, uncaught error, out of memory) while the system was running. */
  readonly threadDied: (thread: HostThread, error: unknown) => void
}

/**
 * The worker threads that host actors: one single-thread piscina per thread, for `pool`
 * placement (as many as the pool's size, which resizePool changes while the system runs) and
 * per `dedicated` actor. piscina starts, replaces and limits the workers; each worker runs one
 * long-lived host task, and after that all traffic flows over MessagePorts joining every pair
 * of threads.
 */
export class WorkerThreads {
  private readonly live = new Map<number, HostThread>()
  private readonly readiness = new Map<number, { resolve(): void; reject(error: unknown): void }>()
  private readonly waitingForPoolThread: Array<(thread: HostThread) => void> = []
  /** Whether `pool` placement is served: the pool was started with at least one thread. */
  private pooled = false
  private nextThreadId = 1
  private closing = false
  private logLevel: LogLevel
  private askTimeoutMs: number

  constructor(private readonly options: WorkerThreadsOptions) {
    this.logLevel = options.logLevel
    this.askTimeoutMs = options.askTimeoutMs
  }

  async startPool(size: number): Promise<void> {
    if (size === 0) return
    this.pooled = true
    await Promise.all(Array.from({ length: size }, () => this.launchPoolThread()))
  }

  /** The pool threads that take actors: live, not being retired. */
  poolThreads(): HostThread[] {
    return this.threads().filter(thread => thread.kind === 'pool' && !thread.retiring)
  }

  /** Starts `count` more pool threads; resolves once they take actors. */
  async grow(count: number): Promise<void> {
    this.pooled = true
    await Promise.all(Array.from({ length: count }, () => this.launchPoolThread()))
  }

  /**
   * Marks `count` pool threads, the least loaded, as retiring (no new actor goes there) and
   * returns them: the caller moves their actors away, then calls retire on each.
   */
  beginShrink(count: number): HostThread[] {
    const chosen = this.poolThreads().sort((a, b) => a.actors - b.actors).slice(0, count)
    for (const thread of chosen) thread.retiring = true
    return chosen
  }

  private async launchPoolThread(): Promise<HostThread> {
    const piscina = this.createPiscina(1, this.options.resourceLimits)
    try {
      return await this.launch(piscina, 'pool')
    } catch (error) {
      await piscina.destroy()
      throw error
    }
  }

  /** The ready pool thread with the fewest actors; waits for a replacement if none is up. */
  /** Whether `thread` is up and taking actors (not dead, retired or still starting). */
  isLive(thread: HostThread): boolean {
    return thread.ready && !thread.retiring && this.live.get(thread.threadId) === thread
  }

  pickPoolThread(): Promise<HostThread> {
    if (!this.pooled) return Promise.reject(new TypeError("placement 'pool' needs workers > 0"))
    let best: HostThread | undefined
    for (const thread of this.live.values()) {
      if (thread.kind === 'pool' && thread.ready && !thread.retiring && (best === undefined || thread.actors < best.actors)) best = thread
    }
    if (best !== undefined) return Promise.resolve(best)
    return new Promise(resolve => this.waitingForPoolThread.push(resolve))
  }

  async startDedicated(resourceLimits: ResourceLimits | undefined): Promise<HostThread> {
    const piscina = this.createPiscina(1, resourceLimits ?? this.options.resourceLimits)
    try {
      return await this.launch(piscina, 'dedicated')
    } catch (error) {
      await piscina.destroy()
      throw error
    }
  }

  /** Shuts down a dedicated thread whose actor stopped, or a pool thread a shrink emptied. */
  async retire(thread: HostThread): Promise<void> {
    if (!this.live.delete(thread.threadId)) return
    await this.shutDownThread(thread)
    await thread.piscina.destroy()
  }

  threads(): HostThread[] {
    return [...this.live.values()]
  }

  /**
   * Sets the level of every worker's logger: the live ones now (resolves once each applied it)
   * and those started later, replacements included. A thread that dies meanwhile is skipped:
   * its replacement starts at the new level.
   */
  async setLogLevel(level: LogLevel): Promise<void> {
    this.logLevel = level
    await this.tellEveryThread({ op: 'log_level', level })
  }

  /** Sets the default ask deadline on every worker, as setLogLevel sets the level. */
  async setAskTimeout(ms: number): Promise<void> {
    this.askTimeoutMs = ms
    await this.tellEveryThread({ op: 'ask_timeout', ms })
  }

  /** Resolves once every live worker applied `op`; a thread that dies meanwhile is skipped (its replacement starts with the new setting). */
  private async tellEveryThread(op: KernelOp): Promise<void> {
    const { host } = this.options
    await Promise.all(
      this.threads().map(thread =>
        host.askKernel(thread.threadId, op, ADMIN_TIMEOUT_MS).catch((error: unknown) => {
          if (this.live.get(thread.threadId) === thread) throw error
        }),
      ),
    )
  }

  /** The worker's handshake arrived: it is listening on all its links. */
  markReady(threadId: number): void {
    this.readiness.get(threadId)?.resolve()
    this.readiness.delete(threadId)
  }

  async close(): Promise<void> {
    this.closing = true
    const threads = this.threads()
    this.live.clear()
    await Promise.all(threads.map(thread => this.shutDownThread(thread)))
    await Promise.all([...new Set(threads.map(thread => thread.piscina))].map(piscina => piscina.destroy()))
  }

  private createPiscina(threads: number, resourceLimits: ResourceLimits | undefined): Piscina {
    return new Piscina({
      filename: HOST_MODULE,
      minThreads: threads,
      maxThreads: threads,
      concurrentTasksPerWorker: 1,
      idleTimeout: Infinity, // piscina skips its idle timer altogether (a huge finite value would overflow setTimeout)
      // The host task never ends while the worker lives, so piscina's idle wait never runs;
      // 'disabled' makes sure it could never block the worker's event loop if it did.
      atomics: 'disabled',
      ...(resourceLimits === undefined ? {} : { resourceLimits }),
      ...(this.options.execArgv === undefined ? {} : { execArgv: [...this.options.execArgv] }),
    })
  }

  private async launch(piscina: Piscina, kind: ThreadKind): Promise<HostThread> {
    const { host } = this.options
    const threadId = this.nextThreadId++
    const toMain = new MessageChannel()
    const admin = new MessageChannel()
    const peers: Array<{ thread: number; port: MessagePort; rings: LinkRings }> = []
    const transfer: MessagePort[] = [toMain.port2, admin.port2]
    // Every pair of threads gets its own channel and rings: the new thread's ends go in its
    // init, the other ends to the existing thread over the link it already has with us.
    for (const other of this.live.values()) {
      const channel = new MessageChannel()
      const rings = createLinkRings()
      host.link(other.threadId)?.sendControl({ ctl: 'peer', thread: threadId, port: channel.port1, rings: rings.a }, [channel.port1])
      peers.push({ thread: other.threadId, port: channel.port2, rings: rings.b })
      transfer.push(channel.port2)
    }
    const mainRings = createLinkRings()
    host.addLink(threadId, toMain.port1, mainRings.a)
    const thread = new HostThread(threadId, kind, piscina, Comlink.wrap<HostAdmin>(nodeEndpoint(admin.port1)), admin.port1)
    this.live.set(threadId, thread)
    const ready = new Promise<void>((resolve, reject) => this.readiness.set(threadId, { resolve, reject }))

    const init: HostThreadInit = {
      threadId,
      directory: host.directory.buffer,
      logLevel: this.logLevel,
      askTimeoutMs: this.askTimeoutMs,
      mainPort: toMain.port2,
      mainRings: mainRings.b,
      adminPort: admin.port2,
      peers,
    }
    piscina.run(init, { transferList: transfer }).then(
      () => this.exited(thread, new ActorError('crashed', `worker thread ${threadId} ended its host task`)),
      error => this.exited(thread, error),
    )
    await ready
    thread.ready = true
    if (kind === 'pool') {
      for (const waiter of this.waitingForPoolThread.splice(0)) waiter(thread)
    }
    return thread
  }

  private exited(thread: HostThread, error: unknown): void {
    thread.closeAdmin()
    this.readiness.get(thread.threadId)?.reject(error)
    this.readiness.delete(thread.threadId)
    if (this.closing || !this.live.delete(thread.threadId)) return // expected: shutdown or retire
    // The directory marks its actors restarting first, so a caller that hears `crashed` and
    // retries is told `restarting` instead of being routed to the dead thread.
    this.options.threadDied(thread, error)
    this.announceDown(thread.threadId)
    if (thread.kind === 'pool') {
      // piscina has already started a replacement worker; give it a host task.
      this.launch(thread.piscina, 'pool').catch(failure => this.options.host.log.error({ err: failure }, 'replacement worker failed to start'))
    } else {
      void thread.piscina.destroy()
    }
  }

  private async shutDownThread(thread: HostThread): Promise<void> {
    try {
      await this.options.host.askKernel(thread.threadId, { op: 'shutdown' }, ADMIN_TIMEOUT_MS)
    } catch (error) {
      this.options.host.log.warn({ err: error, thread: thread.threadId }, 'worker did not acknowledge shutdown; destroying it')
    }
    this.announceDown(thread.threadId)
  }

  /** Every thread fails at once what it was waiting on from `threadId`, and drops its link. */
  private announceDown(threadId: number): void {
    const { host } = this.options
    host.threadDown(threadId)
    for (const other of this.live.values()) host.tellKernel(other.threadId, { op: 'thread_down', thread: threadId })
  }
}
