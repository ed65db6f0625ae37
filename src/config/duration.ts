import { z } from 'zod'

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/

/** Milliseconds in a duration string (`'90s'`, `'15m'`, `'24h'`, `'7d'`), or undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim())
  if (match === null) return undefined
  const ms = Math.round(Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS])
  return ms > 0 ? ms : undefined
}

/**
 * A duration field: a positive number of ms, or a string with a unit. Parsed here, so that the
 * config the stack sees holds ms only and a bad string is reported at its path by the loader.
 */
export const durationMs = () =>
  z.union([z.number().int().positive(), z.string()]).transform((value, ctx) => {
    if (typeof value === 'number') return value
    const ms = parseDuration(value)
    if (ms !== undefined) return ms
    ctx.issues.push({ code: 'custom', input: value, message: `'${value}' is not a duration: give a positive number of ms, or a number with a unit (ms, s, m, h, d), e.g. '90s', '15m', '24h', '7d'` })
    return z.NEVER
  })
