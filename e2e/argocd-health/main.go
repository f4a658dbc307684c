// Command argocd-health runs an Argo CD custom health check (a Lua script) the way Argo CD's
// application controller does, in Argo CD's own Lua engine, github.com/yuin/gopher-lua, at the
// version Argo CD pins. The e2e tests (e2e/src/argocd.rs) build it and feed it objects.
//
// What Argo CD does for a script from argocd-cm (util/lua in Argo CD): a new LState without the
// standard libraries, then only the package, base and table libraries opened (Argo CD also adds
// a "safe" os library of its own with time and date functions only; this command leaves os out,
// so a script that passes here needs nothing beyond what every Argo CD has); the object as the
// global `obj`, decoded from the unstructured object (integers as numbers); a one-second deadline;
// the value the script returns must be a table, encoded to JSON with layeh.com/gopher-json and
// read as {status, message}; a status outside Argo CD's health codes becomes Unknown with the
// message "Lua returned an invalid health status".
//
// Usage: argocd-health SCRIPT.lua < objects.json
//
// Standard input is a JSON array of objects; standard output is a JSON array with, per object,
// {"status": ..., "message": ...} or {"error": ...} (a Lua error, or a return value that is not
// a table). Exit status 2: bad usage or input.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// The health codes Argo CD accepts (gitops-engine's health.HealthStatusCode).
var validStatus = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health SCRIPT.lua < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	dec := json.NewDecoder(os.Stdin)
	dec.UseNumber()
	var objs []map[string]any
	if err := dec.Decode(&objs); err != nil {
		fmt.Fprintf(os.Stderr, "standard input is not a JSON array of objects: %v\n", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(objs))
	for _, obj := range objs {
		results = append(results, health(unstructured(obj).(map[string]any), string(script)))
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// health is Argo CD's ExecuteHealthLua.
func health(obj map[string]any, script string) result {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			panic(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(script); err != nil {
		return result{Error: err.Error()}
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return result{Error: fmt.Sprintf("expect table output from Lua script, not %s", ret.Type())}
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return result{Error: err.Error()}
	}
	var hs struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(encoded, &hs); err != nil {
		return result{Error: err.Error()}
	}
	if !validStatus[hs.Status] {
		return result{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return result{Status: hs.Status, Message: hs.Message}
}

// unstructured turns JSON numbers into int64 (or float64 when not integral), as the
// Kubernetes unstructured decoder does for the objects Argo CD caches.
func unstructured(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = unstructured(e)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = unstructured(e)
		}
		return t
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	}
	return v
}

// decodeValue is Argo CD's conversion of an unstructured value into a Lua value.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}
