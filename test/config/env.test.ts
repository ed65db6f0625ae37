import os from 'node:os'
import t from 'tap'
import { substituteEnv, type EnvProblem } from '../../src/config/env.js'

const sub = (value: unknown, env: Record<string, string>) => {
  const problems: EnvProblem[] = []
  return { value: substituteEnv(value, env, '', problems), problems }
}

t.test('${env.X} substitutes, and is required', async t => {
  t.same(sub({ a: '${env.HOST}' }, { HOST: 'db' }).value, { a: 'db' })
  const { problems } = sub({ server: { token: '${env.TOKEN}' } }, {})
  t.same(problems, [{ path: 'server.token', message: 'environment variable TOKEN is not set (write ${env.TOKEN:=default} to make it optional)' }])
})

t.test('${env.X:=default} uses the default when X is unset or empty', async t => {
  t.equal(sub('${env.URL:=http://localhost:11434}', {}).value, 'http://localhost:11434')
  t.equal(sub('${env.URL:=http://localhost:11434}', { URL: '' }).value, 'http://localhost:11434')
  t.equal(sub('${env.URL:=http://localhost:11434}', { URL: 'http://gpu:8000' }).value, 'http://gpu:8000')
})

t.test('${env.X:+value} yields value only when X is set', async t => {
  t.equal(sub('${env.KEY:+openai}', { KEY: 'sk' }).value, 'openai')
  t.equal(sub('${env.KEY:+openai}', {}).value, null, 'empty, then coerced to null')
})

t.test('substitution works inside longer strings', async t => {
  t.equal(sub('${env.DIR:=/srv}/kv/${env.NAME}', { NAME: 'main' }).value, '/srv/kv/main')
})

t.test('a changed value is coerced; an unchanged one is not', async t => {
  const env = { N: '8321', F: '0.5', T: 'true', FALSE: 'false', E: '', S: '08a' }
  t.same(sub(['${env.N}', '${env.F}', '${env.T}', '${env.FALSE}', '${env.E}', '${env.S}'], env).value, [8321, 0.5, true, false, null, '08a'])
  t.same(sub(['8321', 'true', ''], env).value, ['8321', 'true', ''], 'literal strings stay strings')
})

t.test('~ is the home directory', async t => {
  t.equal(sub('~/data', {}).value, `${os.homedir()}/data`)
  t.equal(sub('${env.D:=~/x}', {}).value, `${os.homedir()}/x`)
  t.equal(sub('a~b', {}).value, 'a~b')
})
