import type { Behavior } from './behavior.js'
import type { Placement, RestartType, SpawnOptions } from './system-handle.js'

export type Strategy = 'one_for_one' | 'one_for_all' | 'rest_for_one'

export interface BackoffSpec {
  readonly minMs: number
  readonly maxMs: number
  /** Up to this fraction of the delay is added at random, so siblings do not restart in lockstep. */
  readonly randomFactor?: number
}

export interface ActorChildSpec<B extends Behavior = Behavior> {
  readonly id: string
  readonly behavior: B
  readonly args?: unknown
  readonly name?: string
  readonly placement?: Placement
  readonly restart?: RestartType
  readonly shutdownMs?: number
  readonly mailbox?: SpawnOptions['mailbox']
  readonly resourceLimits?: SpawnOptions['resourceLimits']
  readonly near?: SpawnOptions['near']
}

export interface SupervisorChildSpec {
  readonly id: string
  readonly supervisor: SupervisorSpec
  readonly restart?: RestartType
}

export type ChildSpec = ActorChildSpec | SupervisorChildSpec

export interface SupervisorSpec {
  readonly strategy: Strategy
  /** More than `intensity` restarts within `periodMs` and the supervisor gives up and escalates. */
  readonly intensity?: number
  readonly periodMs?: number
  readonly backoff?: BackoffSpec
  readonly children: readonly ChildSpec[]
}

/**
 * What a deliberate restart (Supervisor.restartChild) changes in an actor child's spec. `args`
 * replaces the args whenever the key is present, undefined included (a spec that no longer has
 * any); `shutdownMs` bounds this restart's drain and every stop after it; undefined keeps it.
 */
export interface RestartChanges {
  readonly args?: unknown
  readonly shutdownMs?: number | undefined
}

export const DEFAULT_INTENSITY = 3
export const DEFAULT_PERIOD_MS = 5000

/** Checks a spec up front, naming the supervisor and the field that is wrong. */
export function validateSpec(id: string, spec: SupervisorSpec): void {
  const where = `supervisor '${id}'`
  if (!['one_for_one', 'one_for_all', 'rest_for_one'].includes(spec.strategy)) {
    throw new TypeError(`${where}: strategy must be one_for_one, one_for_all or rest_for_one, got ${String(spec.strategy)}`)
  }
  if (spec.intensity !== undefined && (!Number.isInteger(spec.intensity) || spec.intensity < 0)) {
    throw new TypeError(`${where}: intensity must be a non-negative integer, got ${spec.intensity}`)
  }
  if (spec.periodMs !== undefined && !(spec.periodMs > 0)) throw new TypeError(`${where}: periodMs must be positive, got ${spec.periodMs}`)
  if (spec.backoff !== undefined) {
    const { minMs, maxMs, randomFactor = 0 } = spec.backoff
    if (!(minMs >= 0) || !(maxMs >= minMs) || !(randomFactor >= 0)) {
      throw new TypeError(`${where}: backoff needs 0 <= minMs <= maxMs and randomFactor >= 0`)
    }
  }
  const ids = new Set<string>()
  for (const child of spec.children) {
    if (typeof child.id !== 'string' || child.id.length === 0) throw new TypeError(`${where}: every child needs a non-empty id`)
    if (ids.has(child.id)) throw new TypeError(`${where}: duplicate child id '${child.id}'`)
    ids.add(child.id)
    if (child.restart !== undefined && !['permanent', 'transient', 'temporary'].includes(child.restart)) {
      throw new TypeError(`${where}: child '${child.id}' restart must be permanent, transient or temporary`)
    }
  }
}

/** Checks restartChild's changes up front, naming the child and the field that is wrong. */
export function validateRestartChanges(supervisorId: string, childId: string, changes: RestartChanges): void {
  const { shutdownMs } = changes
  if (shutdownMs !== undefined && !(typeof shutdownMs === 'number' && shutdownMs > 0)) {
    throw new TypeError(`supervisor '${supervisorId}': restartChild('${childId}'): shutdownMs must be a positive number, got ${String(shutdownMs)}`)
  }
}
