-- Argo CD health check for modfleet.dev/GoModuleProxy.
-- Install: examples/argocd/argocd-cm-health.yaml carries this exact text under
-- resource.customizations.health.modfleet.dev_GoModuleProxy (a test keeps them equal).
--
-- Argo CD runs it in gopher-lua with only the base, table and package libraries: no `string`
-- (nor `string` methods on values), no `io`, no `os`. Tested that way by e2e/tests/examples.rs,
-- with the Go program in e2e/argocd-health (Argo CD's own Lua engine at the version it pins).
--
--   no status yet, or status.observedGeneration ~= metadata.generation  -> Progressing
--   Degraded=True                                                       -> Degraded
--   Ready=False with a failure reason (see failure_reasons)             -> Degraded
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

-- Reasons that mean something failed, as opposed to "not there yet": the ones the operator
-- writes when something fails (operator/src/status.rs; a test checks that each gives Degraded).
-- Matched by name because without the string library there is no suffix test.
local failure_reasons = {
  ReconcileFailed = true,
  MemberFailed = true,
  CacheVolumeLost = true,
  CredentialsMissing = true,
}

local function is_failure(reason)
  return reason ~= nil and failure_reasons[reason] == true
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
