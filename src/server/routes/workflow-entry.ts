import type { ActorRef } from '../../actor/index.js'
import type { WorkflowMessage } from '../../../actors/workflows/protocol.js'

/** A configured workflow as the HTTP layer sees it: its name, where its definition loads from, and its actor. */
export interface WorkflowEntry {
  readonly name: string
  readonly url: string
  readonly exportName: string
  readonly ref: ActorRef<WorkflowMessage>
}
