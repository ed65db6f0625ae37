import { ActorChild } from './actor-child.js'
import type { EventLoopDelayStats } from './event-loop-delay.js'
import type { HostStats } from './host.js'
import { SupervisorChild, type ChildHandle, type Strategy, type Supervisor } from './supervisor.js'

export interface ActorNode {
  readonly kind: 'actor'
  readonly id: string
  readonly name: string | undefined
  /** Its behaviour's export name: what kind of actor it is. */
  readonly behavior: string
  readonly placement: string
  /** The thread hosting it now (0 is the main thread); undefined while it is not running. */
  readonly thread: number | undefined
  readonly status: string
  readonly restarts: number
  readonly mailboxDepth: number
  readonly messagesHandled: number
}

export interface SupervisorNode {
  readonly kind: 'supervisor'
  readonly id: string
  readonly strategy: Strategy
  readonly status: string
  readonly restarts: number
  readonly children: ReadonlyArray<ActorNode | SupervisorNode>
}

export interface ThreadInfo {
  readonly thread: number
  readonly kind: string
  readonly actors: number
  readonly pendingAsks: number
  /** Messages the thread holds for actors that are restarting, to send once they run again. */
  readonly heldForRestart: number
  readonly deadLetters: { total: number; byCode: Record<string, number> }
  /** How late its event loop runs, over a recent window; null before the first sample. */
  readonly eventLoopDelay: EventLoopDelayStats | null
}

export interface SystemSnapshot {
  readonly root: SupervisorNode
  readonly threads: readonly ThreadInfo[]
  readonly deadLetters: number
}

/** Joins the supervision tree (main thread) with what each thread reports of its actors. */
export function describeTree(root: Supervisor, perThread: readonly HostStats[], kinds: ReadonlyMap<number, string>): SystemSnapshot {
  const live = new Map<number, HostStats['actors'][number]>()
  for (const stats of perThread) for (const actor of stats.actors) live.set(actor.slot, actor)

  const describeSupervisor = (supervisor: Supervisor, restarts: number): SupervisorNode => ({
    kind: 'supervisor',
    id: supervisor.id,
    strategy: supervisor.strategy,
    status: supervisor.status,
    restarts,
    children: supervisor.childHandles.map(describeChild),
  })

  const describeChild = (child: ChildHandle): ActorNode | SupervisorNode => {
    if (child instanceof SupervisorChild) return describeSupervisor(child.supervisor, child.restarts)
    const actor = child as ActorChild
    const stats = live.get(actor.slot)
    const thread = actor.thread === 'main' ? 0 : actor.thread?.threadId
    return {
      kind: 'actor',
      id: actor.id,
      name: actor.ref.name,
      behavior: actor.config.behavior.exportName,
      placement: actor.config.placement,
      thread,
      status: actor.status,
      restarts: actor.restarts,
      mailboxDepth: stats?.mailboxDepth ?? 0,
      messagesHandled: stats?.messagesHandled ?? 0,
    }
  }

  return {
    root: describeSupervisor(root, 0),
    threads: perThread.map(stats => ({
      thread: stats.thread,
      kind: kinds.get(stats.thread) ?? 'unknown',
      actors: stats.actors.length,
      pendingAsks: stats.pendingAsks,
      heldForRestart: stats.heldForRestart,
      deadLetters: stats.deadLetters,
      eventLoopDelay: stats.eventLoopDelay ?? null,
    })),
    deadLetters: perThread.reduce((sum, stats) => sum + stats.deadLetters.total, 0),
  }
}

/** Every actor in a snapshot's tree, depth first. */
export function actorNodes(node: SupervisorNode): ActorNode[] {
  return node.children.flatMap(child => (child.kind === 'actor' ? [child] : actorNodes(child)))
}
