import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { tableStore } from '../actors/stores/table-store.js'
import type { RunInfo, StartReply, WorkflowActorArgs, WorkflowMessage } from '../actors/workflows/protocol.js'
import { workflowActor } from '../actors/workflows/workflow-actor.js'
import { ActorError, ActorSystem, actorNodes, type ActorChildSpec, type ActorRef, type Supervisor, type SupervisorSpec } from '../src/index.js'
import { diesOnce, epochMs, restartProbe, type ResumeMark, type RestartProbeMessage } from './fixtures/workflows.js'
import { measure, median, type BenchResult, type Subject } from './harness.js'

/** Worker deaths per side per round; a round's figure is their median. */
const KILLS_PER_ROUND = 3
const WORKERS = 2
const DEADLINE_MS = 30_000
/**
 * Both sides' subjects live under a supervisor with the stack's workflows supervisor's backoff
 * (src/stack/workflows.ts). A period shorter than the pause between deaths makes each restart a
 * first one (backoff 5 to 6 ms), as a worker death rare enough for the stack's intensity is;
 * the intensity only has to outlast the benchmark's deliberate deaths.
 */
const SUPERVISION: SupervisorSpec = { strategy: 'one_for_one', intensity: 1000, periodMs: 10, backoff: { minMs: 5, maxMs: 5000, randomFactor: 0.2 }, children: [] }

const subjects: Subject[] = [
  {
    name: 'wf_resume_ms',
    unit: 'ms',
    baseline: "the kernel restarting a plain actor under the same supervisor: its worker's death to its first answer after",
    better: 'lower',
    target: 'value <= 250 ms',
  },
]

const pause = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Codes an ask gets while its actor's worker is dying or the actor restarting. */
const RESTARTING = new Set(['crashed', 'restarting', 'stopped', 'no_such_actor'])

/** Retries `ask` until it answers, through the codes a restart gives. */
async function answered<T>(ask: () => Promise<T>, what: string, retryMs: number): Promise<T> {
  const deadline = Date.now() + DEADLINE_MS
  for (;;) {
    try {
      return await ask()
    } catch (error) {
      if (!(error instanceof ActorError && RESTARTING.has(error.code))) throw error
      if (Date.now() > deadline) throw new Error(`${what}: no answer within ${DEADLINE_MS} ms`)
      await pause(retryMs)
    }
  }
}

function marks(file: string): ResumeMark[] {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map(line => JSON.parse(line) as ResumeMark)
}

/**
 * One side: a resident actor that stays on one worker, and a subject spawned for each death on
 * the other worker, whose death moves it next to the resident. Both sides keep this layout, so
 * each restart lands on a live worker that has loaded the subject's modules before (as a stack's
 * surviving workers have), while piscina starts a replacement for the dead one.
 */
class Side<R> {
  readonly resident: ActorRef<R>
  readonly #system: ActorSystem
  readonly #supervisor: Supervisor
  readonly #residentThread: number
  #spawned = 0

  private constructor(system: ActorSystem, supervisor: Supervisor, resident: ActorRef<R>, residentThread: number) {
    this.#system = system
    this.#supervisor = supervisor
    this.resident = resident
    this.#residentThread = residentThread
  }

  /** A system of its own, with `spawnResident`'s actor (named, on the pool) and a supervisor for the subjects. */
  static async start<R>(spawnResident: (system: ActorSystem) => Promise<ActorRef<R>>): Promise<Side<R>> {
    // Worker deaths are the point here: their error lines are not news.
    const system = await ActorSystem.start({ workers: WORKERS, logger: pino({ level: 'fatal' }) })
    const resident = await spawnResident(system)
    const supervisor = await system.supervise(SUPERVISION, { id: 'subjects' })
    return new Side(system, supervisor, resident, (await Side.#threadOf(system, resident))!)
  }

  /** Spawns a subject on a pool worker other than the resident's, once the pool is back to full strength. */
  async spawn<M>(spec: Omit<ActorChildSpec, 'id' | 'name' | 'placement' | 'restart'>): Promise<ActorRef<M>> {
    const deadline = Date.now() + DEADLINE_MS
    for (;;) {
      const { threads } = await this.#system.inspect()
      if (threads.filter(thread => thread.kind === 'pool').length >= WORKERS) {
        const id = `subject-${++this.#spawned}`
        await this.#supervisor.addChild({ ...spec, id, name: id, placement: 'pool', restart: 'permanent' } as ActorChildSpec)
        const ref = this.#supervisor.child<M>(id)
        if ((await Side.#threadOf(this.#system, ref)) !== this.#residentThread) return ref
        await this.#system.stop(ref) // the replacement worker was not ready yet
      }
      if (Date.now() > deadline) throw new Error(`the pool did not get back to ${WORKERS} workers`)
      await pause(10)
    }
  }

  stop(ref: ActorRef<any>): Promise<void> {
    return this.#system.stop(ref)
  }

  shutdown(): Promise<void> {
    return this.#system.shutdown()
  }

  /** The thread of a named actor. */
  static async #threadOf(system: ActorSystem, ref: ActorRef<any>): Promise<number | undefined> {
    return actorNodes((await system.inspect()).root).find(actor => actor.name === ref.name)?.thread
  }
}

/**
 * From a worker's death to the resumed run's next step. The workflow's step stamps the time
 * (epoch ms at µs resolution, one clock across threads) and ends its worker; after the
 * workflow actor restarts on the other worker and resumes the run from its journal, the same
 * step runs again and stamps the time it began. The baseline stamps its worker's death the same
 * way and is timed in this thread to the restarted actor's first answer, asking every ms.
 * The runs store (sql_lmdb) lives on the worker that survives.
 */
export async function workflowResume(rounds: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(join(tmpdir(), 'troupe-bench-wf-resume-'))
  const workflows = await Side.start(system =>
    system.spawn(tableStore, { placement: 'pool', name: 'runs', args: { name: 'runs', config: { type: 'sql_lmdb', path: join(dir, 'sql'), map_size_mb: 256 } } }),
  )
  const probes = await Side.start(system => system.spawn(restartProbe, { placement: 'pool', name: 'resident' }))
  let deaths = 0

  /** One plain actor restarted: ms from its worker's death to its first answer after. */
  const probeRestart = async (): Promise<number> => {
    const file = join(dir, `probe-${++deaths}`)
    writeFileSync(file, '')
    const probe = await probes.spawn<RestartProbeMessage>({ behavior: restartProbe })
    const incarnation = await probe.ask<number>({ type: 'ping' })
    probe.tell({ type: 'die', file })
    const deadline = Date.now() + DEADLINE_MS
    let answeredAt: number | undefined
    while (answeredAt === undefined) {
      const startedAt = await answered(() => probe.ask<number>({ type: 'ping' }), 'the probe', 1)
      if (startedAt !== incarnation) answeredAt = epochMs()
      else if (Date.now() > deadline) throw new Error('the probe never died')
      else await pause(1)
    }
    await probes.stop(probe)
    return answeredAt - marks(file)[0]!.at
  }

  /** One run resumed: ms from its worker's death to the resumed run's next step. */
  const workflowResumed = async (): Promise<number> => {
    const file = join(dir, `run-${++deaths}`)
    writeFileSync(file, '')
    const args: WorkflowActorArgs = {
      name: 'diesOnce',
      url: diesOnce.url,
      exportName: diesOnce.exportName,
      runs: { store: workflows.resident, table: 'workflow_runs' },
      owner: 'bench-node',
      maxConcurrent: 8,
      queueSize: 64,
      resumable: true,
      leaseMs: 15_000,
    }
    const ref = await workflows.spawn<WorkflowMessage>({ behavior: workflowActor, args })
    // The run may kill its worker before the start's reply leaves it (a reply in flight dies with
    // its worker): asked again with the same idempotency key, the start answers with the run.
    const key = `resume-${file}`
    const { run } = await answered(() => ref.ask<StartReply>({ type: 'start', startEvent: { file }, idempotencyKey: key }), 'the start', 5)
    const done = await answered(() => ref.ask<RunInfo>({ type: 'wait', runId: run.runId }, { timeoutMs: DEADLINE_MS }), 'the resumed run', 5)
    if (done.status !== 'completed' || (done.result as { attempt?: number }).attempt !== 2) throw new Error(`run ${run.runId} ended ${done.status}: ${JSON.stringify(done.error ?? done.result)}`)
    await workflows.stop(ref)
    const [died, resumed] = marks(file)
    if (died?.attempt !== 1 || resumed?.attempt !== 2) throw new Error(`run ${run.runId}: expected a death on attempt 1 and a resume on attempt 2, found ${JSON.stringify(marks(file))}`)
    return resumed.at - died.at
  }

  try {
    return await measure(subjects, rounds, 1, async () => {
      const probe: number[] = []
      const workflow: number[] = []
      for (let k = 0; k < KILLS_PER_ROUND; k++) {
        probe.push(await probeRestart())
        workflow.push(await workflowResumed())
      }
      return [{ value: median(workflow), baseline: median(probe) }]
    })
  } finally {
    await probes.shutdown()
    await workflows.shutdown()
    rmSync(dir, { recursive: true, force: true })
  }
}
