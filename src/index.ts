export * from './actor/index.js'
export {
  defineWorkflow,
  isWorkflow,
  type Workflow,
  type WorkflowDefinition,
  type RunContext,
  type SessionState,
  type WaitOptions,
  type EmbeddingsResponse,
} from '../actors/workflows/define.js'
/** A pino destination that redacts every thread's lines (worker lines arrive serialised): pass it to the logger given to ActorSystem.start. */
export { RedactingDestination, SECRET_PATHS } from './supervisor/redaction.js'
