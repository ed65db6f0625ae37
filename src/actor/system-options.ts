import type { Logger } from 'pino'
import { z } from 'zod'
import { MAX_ACTORS } from './directory.js'
import { ActorRef } from './ref.js'

const positiveMs = z.number().positive()
const resourceLimitsSchema = z
  .object({
    maxOldGenerationSizeMb: z.number().positive(),
    maxYoungGenerationSizeMb: z.number().positive(),
    codeRangeSizeMb: z.number().positive(),
    stackSizeMb: z.number().positive(),
  })
  .partial()
  .strict()

/** The levels every thread's pino logger knows: a user's custom levels do not exist on the workers. */
export const logLevelSchema = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
export type LogLevel = z.infer<typeof logLevelSchema>

export const startOptionsSchema = z
  .object({
    workers: z.number().int().min(0).max(1024).optional(),
    logger: z.custom<Logger>(v => typeof (v as Logger | null)?.child === 'function', 'must be a pino logger').optional(),
    askTimeoutMs: positiveMs.optional(),
    startTimeoutMs: positiveMs.optional(),
    mailboxCapacity: z.number().int().positive().optional(),
    /** Slots the actor directory may grow to (it starts small and doubles as needed); at most one fewer actors live at once, past which spawn fails with `capacity`. */
    maxActors: z.number().int().min(2).max(MAX_ACTORS).optional(),
    resourceLimits: resourceLimitsSchema.optional(),
    execArgv: z.array(z.string()).optional(),
    restart: z.object({ intensity: z.number().int().min(0).optional(), periodMs: positiveMs.optional() }).strict().optional(),
  })
  .strict()

export const spawnOptionsSchema = z
  .object({
    name: z.string().min(1).optional(),
    placement: z.enum(['main', 'pool', 'dedicated']).optional(),
    args: z.unknown().optional(),
    mailbox: z.object({ capacity: z.number().int().positive() }).strict().optional(),
    restart: z.enum(['permanent', 'transient', 'temporary']).optional(),
    shutdownMs: positiveMs.optional(),
    resourceLimits: resourceLimitsSchema.optional(),
    near: z.custom<ActorRef>(value => value instanceof ActorRef, 'must be an ActorRef').optional(),
  })
  .strict()

export type ActorSystemOptions = z.input<typeof startOptionsSchema>

/** Parses options, throwing a TypeError that names every wrong option by its path. */
export function parse<T>(schema: z.ZodType<T>, value: unknown, where: string): T {
  const result = schema.safeParse(value ?? {})
  if (result.success) return result.data
  const problems = result.error.issues.map(issue => `${[where, ...issue.path].join('.')}: ${issue.message}`)
  throw new TypeError(problems.join('; '))
}
