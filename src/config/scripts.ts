// SPDX-License-Identifier: Apache-2.0
/**
 * The Lua scripts that make every write atomic. Redis runs a script as one
 * step, so no reader ever sees the version, the object and the stream out of
 * step with each other.
 *
 * Stored values are built by string concatenation, not cjson: cjson turns an
 * empty array into {} and would reorder keys.
 */

/**
 * KEYS: version, objects, stream. ARGV: maxlen, the expected version ('' for
 * any), then triples (op, field, json).
 * A writer that decided on what it read at one version (kernmesh apply) gives
 * that version: if another write came in between, nothing is written and the
 * reply is CONFLICT <current version>, like a stale resourceVersion in
 * Kubernetes. A delete of a missing object fails the whole batch the same way.
 * Both checks come before the first write: a script is not rolled back.
 * Returns the version given to each op.
 */
export const WRITE = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if ARGV[2] ~= '' and current ~= tonumber(ARGV[2]) then
  return redis.error_reply('CONFLICT ' .. current)
end
local n = (#ARGV - 2) / 3
for i = 0, n - 1 do
  local op, f = ARGV[3 + i * 3], ARGV[4 + i * 3]
  if op == 'delete' and redis.call('HEXISTS', KEYS[2], f) == 0 then
    return redis.error_reply('NOTFOUND ' .. f)
  end
end
local versions = {}
for i = 0, n - 1 do
  local op, f, json = ARGV[3 + i * 3], ARGV[4 + i * 3], ARGV[5 + i * 3]
  local v = redis.call('INCR', KEYS[1])
  local slash = string.find(f, '/', 1, true)
  local kind, key = string.sub(f, 1, slash - 1), string.sub(f, slash + 1)
  if op == 'put' then
    redis.call('HSET', KEYS[2], f, '{"version":' .. v .. ',"object":' .. json .. '}')
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 'version', v, 'kind', kind, 'key', key, 'op', 'put', 'obj', json)
  else
    redis.call('HDEL', KEYS[2], f)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 'version', v, 'kind', kind, 'key', key, 'op', 'delete')
  end
  versions[#versions + 1] = v
end
return versions
`;

/** KEYS: version, objects, stream. ARGV[1]: "1" to include every object. Returns {version, lastId, [field, value]...}. */
export const SNAPSHOT = `
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
local out = {v, id}
if ARGV[1] == '1' then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all do out[#out + 1] = all[i] end
end
return out
`;
