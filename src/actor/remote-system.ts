import type { ArgsOf, Behavior, MessageOf } from './behavior.js'
import { MAIN_THREAD, type ActorHost } from './host.js'
import type { ActorRef } from './ref.js'
import type { SpawnOptions, SystemHandle } from './system-handle.js'

/**
 * ctx.system for behaviours on a worker thread: every call is an ask to the main thread's
 * kernel, which owns the actor tree. Refs come back inside the replies, bound to this thread.
 */
export class MainThreadSystem implements SystemHandle {
  constructor(private readonly host: ActorHost) {}

  spawn<B extends Behavior>(behavior: B, options: SpawnOptions<ArgsOf<B>> = {}): Promise<ActorRef<MessageOf<B>>> {
    const { resourceLimits, ...portable } = options
    return this.host.askKernel(MAIN_THREAD, {
      op: 'spawn_request',
      url: behavior.url,
      exportName: behavior.exportName,
      options: resourceLimits === undefined ? portable : { ...portable, resourceLimits: { ...resourceLimits } },
    })
  }

  async lookup<M = unknown>(name: string): Promise<ActorRef<M> | undefined> {
    return (await this.host.askKernel<ActorRef<M> | null>(MAIN_THREAD, { op: 'lookup', name })) ?? undefined
  }

  async stop(ref: ActorRef<any>): Promise<void> {
    await this.host.askKernel(MAIN_THREAD, { op: 'stop_request', ref })
  }
}
