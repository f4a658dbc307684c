-- Sample GoModuleProxy objects and the health Argo CD must give them, run against
-- health.lua in a real Lua 5.1 interpreter:
--
--   cd examples/argocd && lua5.1 health_test.lua
--
-- Exits non-zero when any case fails; the last line is "N passed, N failed".
-- The conditions are the ones operator/src/status.rs writes (Ready, Progressing, Degraded).

local script_dir = (arg and arg[0] and string.match(arg[0], "^(.*)/[^/]*$")) or "."
local chunk = assert(loadfile(script_dir .. "/health.lua"))

local function cond(type_, status, reason, message)
  return { type = type_, status = status, reason = reason, message = message or "",
           lastTransitionTime = "2026-01-01T00:00:00Z", observedGeneration = 1 }
end

local function gmp(generation, status)
  return {
    apiVersion = "modfleet.dev/v1alpha1",
    kind = "GoModuleProxy",
    metadata = { name = "gomod", namespace = "team-a", generation = generation },
    spec = { replicas = 3, upstreams = { { url = "https://goproxy.example.com" } } },
    status = status,
  }
end

local function st(observed, conditions)
  return { observedGeneration = observed, members = 3, readyMembers = 3,
           endpoint = "http://gomod.team-a.svc:80", conditions = conditions }
end

local ready_true = cond("Ready", "True", "AllMembersReady", "3/3 members are ready with the current configuration")
local prog_false = cond("Progressing", "False", "RolloutComplete", "Every member runs the current configuration")
local degr_false = cond("Degraded", "False", "AsExpected", "No failures observed")

local cases = {
  { name = "no status yet (just created)",
    obj = gmp(1, nil),
    status = "Progressing", message = "Waiting for the modfleet operator" },
  { name = "status without observedGeneration",
    obj = gmp(1, { conditions = {} }),
    status = "Progressing", message = "generation 1" },
  { name = "spec changed, status still for the previous generation (even if it said Ready)",
    obj = gmp(3, st(2, { ready_true, prog_false, degr_false })),
    status = "Progressing", message = "status is for generation 2" },
  { name = "stale Degraded is not reported while a new generation is pending",
    obj = gmp(3, st(2, { cond("Ready", "False", "MembersNotReady"), prog_false,
                         cond("Degraded", "True", "ReconcileFailed", "forbidden") })),
    status = "Progressing" },
  { name = "all members ready",
    obj = gmp(2, st(2, { ready_true, prog_false, degr_false })),
    status = "Healthy", message = "AllMembersReady: 3/3 members" },
  { name = "scaled to zero",
    obj = gmp(1, st(1, { cond("Ready", "True", "ScaledToZero", "The fleet has no members (replicas: 0)"),
                         prog_false, degr_false })),
    status = "Healthy", message = "ScaledToZero" },
  { name = "rolling out one member at a time",
    obj = gmp(4, st(4, { cond("Ready", "False", "MembersNotReady", "1/3 members are ready"),
                         cond("Progressing", "True", "RollingOut", "not yet updated: gomod-1, gomod-2"),
                         degr_false })),
    status = "Progressing", message = "RollingOut: not yet updated: gomod-1, gomod-2" },
  { name = "scaling up, caches pending",
    obj = gmp(1, st(1, { cond("Ready", "False", "CachePending", "Waiting for cache volumes to bind: gomod-cache-2"),
                         cond("Progressing", "True", "ScalingUp", "Scaling from 2 to 3 members"),
                         degr_false })),
    status = "Progressing", message = "ScalingUp" },
  { name = "Ready=True but still Progressing (a new member starting)",
    obj = gmp(1, st(1, { ready_true, cond("Progressing", "True", "WaitingForMembers", "2/3 members are ready"), degr_false })),
    status = "Progressing", message = "WaitingForMembers" },
  { name = "reconcile failed (RBAC)",
    obj = gmp(1, st(1, { cond("Ready", "False", "MembersNotReady"), prog_false,
                         cond("Degraded", "True", "ReconcileFailed", "applying Deployment gomod-0: forbidden") })),
    status = "Degraded", message = "ReconcileFailed: applying Deployment gomod-0: forbidden" },
  { name = "member failed wins over Progressing=True",
    obj = gmp(5, st(5, { cond("Ready", "False", "MembersNotReady"),
                         cond("Progressing", "True", "RollingOut"),
                         cond("Degraded", "True", "MemberFailed", "Deployment gomod-1: progress deadline exceeded") })),
    status = "Degraded", message = "MemberFailed" },
  { name = "cache volume lost",
    obj = gmp(1, st(1, { ready_true, prog_false,
                         cond("Degraded", "True", "CacheVolumeLost", "Cache volumes lost their PersistentVolume: gomod-cache-0") })),
    status = "Degraded", message = "CacheVolumeLost" },
  { name = "Ready=False with a failure reason and no Degraded condition",
    obj = gmp(1, st(1, { cond("Ready", "False", "ReconcileFailed", "boom") })),
    status = "Degraded", message = "ReconcileFailed: boom" },
  { name = "Ready=False with a failure reason while Progressing=True",
    obj = gmp(1, st(1, { cond("Ready", "False", "ImagePullError", "cannot pull"),
                         cond("Progressing", "True", "RollingOut") })),
    status = "Degraded", message = "ImagePullError" },
  { name = "Ready=False while members start (not a failure), not progressing",
    obj = gmp(1, st(1, { cond("Ready", "False", "MembersNotReady", "2/3 members are ready"), prog_false, degr_false })),
    status = "Progressing", message = "MembersNotReady" },
  { name = "Degraded=False and Unknown Ready",
    obj = gmp(1, st(1, { cond("Ready", "Unknown", "Pending"), degr_false })),
    status = "Progressing" },
  { name = "status with no conditions",
    obj = gmp(1, st(1, {})),
    status = "Progressing", message = "Waiting for the Ready condition" },
  { name = "object without metadata.generation (defensive)",
    obj = { metadata = { name = "x" }, status = st(1, { ready_true, prog_false, degr_false }) },
    status = "Healthy" },
}

local passed, failed = 0, 0
for _, c in ipairs(cases) do
  obj = c.obj
  local ok, hs = pcall(chunk)
  local problem = nil
  if not ok then
    problem = "script error: " .. tostring(hs)
  elseif type(hs) ~= "table" then
    problem = "script returned " .. type(hs) .. ", not a table"
  elseif hs.status ~= c.status then
    problem = "status " .. tostring(hs.status) .. ", want " .. c.status ..
              " (message: " .. tostring(hs.message) .. ")"
  elseif type(hs.message) ~= "string" or hs.message == "" then
    problem = "no message"
  elseif c.message ~= nil and string.find(hs.message, c.message, 1, true) == nil then
    problem = "message " .. string.format("%q", hs.message) .. " does not contain " .. string.format("%q", c.message)
  end
  if problem == nil then
    passed = passed + 1
    print("ok   - " .. c.name .. " => " .. hs.status .. ": " .. hs.message)
  else
    failed = failed + 1
    print("FAIL - " .. c.name .. ": " .. problem)
  end
end
print(string.format("lua: %d passed, %d failed", passed, failed))
if failed > 0 then
  os.exit(1)
end
