import t from 'tap'
import type { ChatCompletionChunk } from '../../actors/providers/inference/protocol.js'
import { CompletionAssembler } from '../../src/server/completion-assembler.js'

const chunk = (choices: ChatCompletionChunk['choices'], usage?: ChatCompletionChunk['usage']): ChatCompletionChunk => ({
  id: 'chatcmpl-1',
  object: 'chat.completion.chunk',
  created: 7,
  model: 'm',
  choices,
  ...(usage === undefined ? {} : { usage }),
})

t.test('tool call fragments are joined by index, sorted, with null content and the finish reason', async t => {
  const assembler = new CompletionAssembler()
  assembler.add(chunk([{ index: 0, delta: { role: 'assistant', content: null }, finish_reason: null }]))
  // Two calls, their fragments interleaved and the second call's first: only `index` ties them.
  assembler.add(chunk([{ index: 0, delta: { tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'second', arguments: '' } }] }, finish_reason: null }]))
  assembler.add(chunk([{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'first', arguments: '{"a"' } }] }, finish_reason: null }]))
  assembler.add(chunk([{ index: 0, delta: { tool_calls: [{ index: 1, function: { arguments: '{"b":2}' } }] }, finish_reason: null }]))
  assembler.add(chunk([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: ':1}' } }] }, finish_reason: null }]))
  assembler.add(chunk([{ index: 0, delta: {}, finish_reason: 'tool_calls' }]))
  assembler.add(chunk([], { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 }))
  t.same(assembler.completion(), {
    id: 'chatcmpl-1',
    object: 'chat.completion',
    created: 7,
    model: 'm',
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_a', type: 'function', function: { name: 'first', arguments: '{"a":1}' } },
            { id: 'call_b', type: 'function', function: { name: 'second', arguments: '{"b":2}' } },
          ],
        },
        finish_reason: 'tool_calls',
      },
    ],
    usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
  })
})

t.test('empty content strings beside tool calls still assemble to null content', async t => {
  const assembler = new CompletionAssembler()
  assembler.add(chunk([{ index: 0, delta: { role: 'assistant', content: '', tool_calls: [{ index: 0, id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] }, finish_reason: null }]))
  assembler.add(chunk([{ index: 0, delta: { content: '' }, finish_reason: 'tool_calls' }]))
  t.match(assembler.completion()?.choices[0]?.message, { content: null, tool_calls: [{ id: 'c' }] })
})

t.test('content, refusal and logprobs are concatenated per choice', async t => {
  const assembler = new CompletionAssembler()
  const token = (text: string) => ({ token: text, logprob: -0.5, bytes: null, top_logprobs: [] })
  assembler.add(chunk([
    { index: 1, delta: { role: 'assistant', content: 'B' }, finish_reason: null, logprobs: { content: [token('B')], refusal: null } },
    { index: 0, delta: { role: 'assistant', content: 'A' }, finish_reason: null, logprobs: { content: [token('A')], refusal: null } },
  ]))
  assembler.add(chunk([{ index: 0, delta: { content: 'a' }, finish_reason: 'stop', logprobs: { content: [token('a')], refusal: null } }]))
  assembler.add(chunk([{ index: 1, delta: { refusal: 'no, ' }, finish_reason: null }]))
  assembler.add(chunk([{ index: 1, delta: { refusal: 'sorry' }, finish_reason: 'stop' }]))
  const choices = assembler.completion()?.choices
  t.same(choices?.map(c => c.index), [0, 1], 'choices in index order')
  t.same(choices?.[0], { index: 0, message: { role: 'assistant', content: 'Aa' }, finish_reason: 'stop', logprobs: { content: [token('A'), token('a')], refusal: null } })
  t.same(choices?.[1], { index: 1, message: { role: 'assistant', content: 'B', refusal: 'no, sorry' }, finish_reason: 'stop', logprobs: { content: [token('B')], refusal: null } })
})

t.test('a choice with no content delta has null content; no chunk, no completion', async t => {
  t.equal(new CompletionAssembler().completion(), undefined)
  const assembler = new CompletionAssembler()
  assembler.add(chunk([{ index: 0, delta: { role: 'assistant' }, finish_reason: 'stop' }]))
  t.same(assembler.completion()?.choices[0]?.message, { role: 'assistant', content: null })
})
