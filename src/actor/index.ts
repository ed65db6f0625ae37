export { ActorSystem, type ActorSystemOptions, type LogLevel } from './system.js'
export { defineBehavior, isBehavior, type Behavior, type BehaviorContext, type BehaviorDefinition, type StopReason, type MessageOf, type ArgsOf } from './behavior.js'
export { ActorRef, type AskOptions, type Cancellation, type StreamOptions } from './ref.js'
export { CancelSource } from './cancel.js'
export { ActorError, KERNEL_ERROR_CODES, type ActorErrorCode, type ActorErrorData, type KernelErrorCode } from './errors.js'
export {
  Supervisor,
  type SupervisorSpec,
  type ChildSpec,
  type ActorChildSpec,
  type SupervisorChildSpec,
  type Strategy,
  type BackoffSpec,
  type RestartChanges,
} from './supervisor.js'
export { MAX_HELD_PER_ACTOR } from './restart-wait.js'
export type { SystemHandle, SpawnOptions, Placement, RestartType } from './system-handle.js'
export { actorNodes, type SystemSnapshot, type SupervisorNode, type ActorNode, type ThreadInfo } from './inspect.js'
export type { EventLoopDelayStats } from './event-loop-delay.js'
