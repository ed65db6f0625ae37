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
