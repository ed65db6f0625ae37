import { z } from 'zod'
import { defineBehavior } from '../actor/index.js'
import type { ConfigInspection, ReloadReport } from './stack-supervisor.js'

/**
 * The stack's supervisor as an actor, registered as `stack` on the main thread: any thread
 * (a workflow, a library user's actor, another process's bridge) reloads the config or reads
 * what runs by asking it, as the HTTP admin routes do. It holds no state of its own: the
 * StackSupervisor it is given by reference (main-thread args are not copied) owns the config,
 * and queues the reloads.
 */
export const stackProtocol = z.discriminatedUnion('type', [
  /** Re-read the config file and apply it: a ReloadReport. */
  z.object({ type: z.literal('reload') }),
  /** The running config's generation, sha256 and last reload: a ConfigInspection. */
  z.object({ type: z.literal('inspect') }),
])
export type StackMessage = z.infer<typeof stackProtocol>

export interface StackActorArgs {
  readonly owner: { reload(trigger: 'api'): Promise<ReloadReport>; inspect(): ConfigInspection }
}

export const STACK_ACTOR = 'stack'

export const stackActor = defineBehavior(import.meta.url, 'stackActor', {
  protocol: stackProtocol,
  init: (args: StackActorArgs) => args,
  receive(state, msg: StackMessage) {
    return msg.type === 'reload' ? state.owner.reload('api') : state.owner.inspect()
  },
})
