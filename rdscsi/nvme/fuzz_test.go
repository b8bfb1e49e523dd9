package nvme

import (
	"strings"
	"testing"
)

// FuzzConnectArgs checks that whatever passes validation becomes nvme-cli
// arguments that cannot be read as extra options or split into several.
func FuzzConnectArgs(f *testing.F) {
	f.Add("10.0.0.5", 4420, "nqn.2000-02.com.mikrotik:pvc-0b7e4a52-6f3c-4d57-9b3f-5264732d6373", -1, 2, 5)
	f.Add("rds.example.net", 4420, "nqn.2000-02.com.mikrotik:pvc-x --hostnqn=evil", 0, 0, 0)
	f.Add("-oProxyCommand=sh", 1, "nqn.2000-02.com.mikrotik:pvc-a", 0, 0, 0)
	f.Add("fe80::1", 65535, "nqn.2000-02.com.mikrotik:pvc-\n", 600, 10, 30)
	conn := NewTCPConnector()
	f.Fuzz(func(t *testing.T, addr string, port int, nqn string, loss, delay, keep int) {
		tg := Target{Address: addr, Port: port, NQN: nqn, CtrlLossTmo: loss, ReconnectDelay: delay, KeepAliveTmo: keep}
		if conn.checkNQN(nqn) != nil || checkTarget(tg) != nil {
			return
		}
		args := connectArgs(tg)
		if len(args)%2 != 1 || args[0] != "connect" {
			t.Fatalf("args %q", args)
		}
		for i := 1; i < len(args); i += 2 {
			flag, val := args[i], args[i+1]
			if !strings.HasPrefix(flag, "--") {
				t.Fatalf("flag %q in %q", flag, args)
			}
			if val == "" || strings.ContainsAny(val, " \t\n\r\x00=,") {
				t.Fatalf("value %q of %s", val, flag)
			}
			if strings.HasPrefix(val, "-") && !(flag == "--ctrl-loss-tmo" && val == "-1") {
				t.Fatalf("value %q of %s reads as an option", val, flag)
			}
		}
		if !conn.owns(nqn) {
			t.Fatalf("foreign nqn %q accepted", nqn)
		}
	})
}
