-- Argo CD health check for modfleet.dev/GoModuleProxy (Lua 5.1, as Argo CD runs it).
-- Install: examples/argocd/argocd-cm-health.yaml carries this exact text under
-- resource.customizations.health.modfleet.dev_GoModuleProxy (a test keeps them equal).
-- Tested against the sample table in health_test.lua: `lua5.1 health_test.lua`.
--
--   no status yet, or status.observedGeneration ~= metadata.generation  -> Progressing
--   Degraded=True                                                       -> Degraded
--   Ready=False with a failure reason (…Failed, …Error, …Lost, …)        -> Degraded
--   Progressing=True                                                    -> Progressing
--   Ready=True                                                          -> Healthy
--   anything else (Ready=False while members start, no Ready yet)       -> Progressing
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c)
  local msg = c.reason or c.type
  if c.message ~= nil and c.message ~= "" then
    msg = msg .. ": " .. c.message
  end
  return msg
end

-- Reasons that mean something failed, as opposed to "not there yet".
local function is_failure(reason)
  if reason == nil then
    return false
  end
  local suffixes = { "Failed", "Failure", "Error", "Lost", "Invalid", "Forbidden" }
  for _, s in ipairs(suffixes) do
    if string.sub(reason, -string.len(s)) == s then
      return true
    end
  end
  return false
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the modfleet operator to report a status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to reconcile generation " .. tostring(generation)
  if status.observedGeneration ~= nil then
    hs.message = hs.message .. " (status is for generation " .. tostring(status.observedGeneration) .. ")"
  end
  return hs
end

local degraded = condition(status.conditions, "Degraded")
if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded)
  return hs
end

local ready = condition(status.conditions, "Ready")
if ready ~= nil and ready.status == "False" and is_failure(ready.reason) then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

local progressing = condition(status.conditions, "Progressing")
if progressing ~= nil and progressing.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(progressing)
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready)
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
