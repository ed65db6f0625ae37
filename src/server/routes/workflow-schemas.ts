import { z } from 'zod'
import type { WorkflowDefinition } from '../../../actors/workflows/define.js'

/**
 * What the protocol says about a workflow's definition: JSON Schemas of its start and stop
 * events (/schema) and of the events it declares (/events), and its graph (/representation),
 * all from the definition's zod schemas.
 */

type JsonSchema = Record<string, unknown>

/** A zod schema as JSON Schema; what JSON Schema cannot say (transforms, dates) is left open. */
function jsonSchema(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  return z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as JsonSchema
}

/** A workflow without a stop schema returns any object. */
const ANY_STOP: JsonSchema = { type: 'object', properties: {}, additionalProperties: true }

export function schemaOf(definition: WorkflowDefinition<unknown, unknown>): { start: JsonSchema; stop: JsonSchema } {
  return {
    start: { title: 'StartEvent', ...jsonSchema(definition.start, 'input') },
    stop: { title: 'StopEvent', ...(definition.stop === undefined ? ANY_STOP : jsonSchema(definition.stop, 'output')) },
  }
}

export function eventSchemas(definition: WorkflowDefinition<unknown, unknown>): JsonSchema[] {
  return Object.entries(definition.events ?? {}).map(([type, schema]) => ({ ...jsonSchema(schema, 'output'), title: type }))
}

/**
 * The workflow as workflows-py's graph: StartEvent into the one step, `run`, and out to
 * StopEvent. The declared events hang off `run`: a function workflow does not say which it
 * emits and which it waits for.
 */
export function representation(name: string, definition: WorkflowDefinition<unknown, unknown>): { graph: Record<string, unknown> } {
  const { start, stop } = schemaOf(definition)
  const declared = Object.entries(definition.events ?? {}).filter(([type]) => type !== 'StartEvent' && type !== 'StopEvent' && type !== 'run')
  const eventNode = (type: string, schema: JsonSchema): Record<string, unknown> => ({ id: type, label: type, node_type: 'event', event_type: type, event_types: [type], event_schema: schema })
  const edge = (source: string, target: string): Record<string, unknown> => ({ source, target, label: null })
  return {
    graph: {
      name,
      description: definition.description ?? null,
      nodes: [
        eventNode('StartEvent', start),
        { id: 'run', label: 'run', node_type: 'step', description: definition.description ?? null },
        ...declared.map(([type, schema]) => eventNode(type, { ...jsonSchema(schema, 'output'), title: type })),
        eventNode('StopEvent', stop),
      ],
      edges: [edge('StartEvent', 'run'), ...declared.map(([type]) => edge('run', type)), edge('run', 'StopEvent')],
    },
  }
}
