package rdstest

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	type namedVal struct{ name, text string }
	for _, tc := range []struct {
		line  string
		path  string
		verb  string
		args  []namedVal // name "" = unnamed; text "[find]" = sub-expression
		where bool
	}{
		{line: "/system identity print", path: "system identity", verb: "print"},
		{line: "/system/identity/print", path: "system identity", verb: "print"},
		{line: "  system resource print  ", path: "system resource", verb: "print"},
		{line: "/disk print detail where slot=x", path: "disk", verb: "print", args: []namedVal{{"", "detail"}}, where: true},
		{line: "/disk/print terse", path: "disk", verb: "print", args: []namedVal{{"", "terse"}}},
		{line: `/disk add type=file file-path=/storage-pool/k8s/x.img file-size=10G slot=pvc-1 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-1`,
			path: "disk", verb: "add", args: []namedVal{{"type", "file"}, {"file-path", "/storage-pool/k8s/x.img"},
				{"file-size", "10G"}, {"slot", "pvc-1"}, {"nvme-tcp-server-nqn", "nqn.2000-02.com.mikrotik:pvc-1"}}},
		{line: `/disk add slot="a b\"c\\d\_e\41\n"`, path: "disk", verb: "add", args: []namedVal{{"slot", "a b\"c\\d eA\n"}}},
		{line: `/disk add slot="semi;colon [x] {y}"`, path: "disk", verb: "add", args: []namedVal{{"slot", "semi;colon [x] {y}"}}},
		{line: `/disk add slot=""`, path: "disk", verb: "add", args: []namedVal{{"slot", ""}}},
		{line: `/disk set [find slot=pvc-1] file-size=20G`, path: "disk", verb: "set", args: []namedVal{{"", "[find]"}, {"file-size", "20G"}}},
		{line: `/disk remove [find where slot="pvc-1" and type=file]`, path: "disk", verb: "remove", args: []namedVal{{"", "[find]"}}},
		{line: `/disk add copy-from=[ /disk find slot=a ] slot=b`, path: "disk", verb: "add", args: []namedVal{{"copy-from", "[find]"}, {"slot", "b"}}},
		{line: `/file remove [find name="storage-pool/k8s/x.img"]`, path: "file", verb: "remove", args: []namedVal{{"", "[find]"}}},
		{line: `/disk monitor-traffic storage-pool once`, path: "disk", verb: "monitor-traffic", args: []namedVal{{"", "storage-pool"}, {"", "once"}}},
		{line: "/disk print\n", path: "disk", verb: "print"},
		{line: "/disk", path: "disk"},
	} {
		cmd, err := parseCommand(tc.line)
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if cmd.menu.path != tc.path || cmd.verb != tc.verb || (cmd.where != nil) != tc.where {
			t.Errorf("%q: got path %q verb %q where %v", tc.line, cmd.menu.path, cmd.verb, cmd.where != nil)
		}
		var got []namedVal
		for _, a := range cmd.args {
			v := a.val.text
			if a.val.find != nil {
				v = "[find]"
			}
			got = append(got, namedVal{a.name, v})
		}
		if len(got) != len(tc.args) {
			t.Errorf("%q: args %q, want %q", tc.line, got, tc.args)
			continue
		}
		for i := range got {
			if got[i] != tc.args[i] {
				t.Errorf("%q: arg %d = %q, want %q", tc.line, i, got[i], tc.args[i])
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"/dsk print", "bad command name dsk (line 1 column 2)"},
		{"/disk prnt", "bad command name prnt (line 1 column 7)"},
		{"/disk/prnt", "bad command name prnt (line 1 column 7)"},
		{"/system identity set", "bad command name set (line 1 column 18)"},
		{"", "expected command name (line 1 column 1)"},
		{"/", "expected command name (line 1 column 2)"},
		{`/disk "print"`, "expected command name (line 1 column 7)"},
		{"/disk print; /system reboot", "expected end of command (line 1 column 12)"},
		{"/disk print ;", "expected end of command (line 1 column 13)"},
		{"/disk add slot=a;b", "expected end of command (line 1 column 17)"},
		{"/disk add slot=$x", "syntax error (line 1 column 16)"},
		{`/disk add slot="a$x"`, "syntax error (line 1 column 18)"},
		{`/disk add slot="abc`, "syntax error (line 1 column 16)"},
		{`/disk add slot="abc\`, "syntax error (line 1 column 16)"},
		{`/disk add slot="a\qb"`, "syntax error (line 1 column 18)"},
		{`/disk add slot="a"b`, "syntax error (line 1 column 19)"},
		{"/disk add slot=a\nb", "syntax error (line 1 column 17)"},
		{"/disk add slot=a{b}", "syntax error (line 1 column 17)"},
		{"/disk add slot=`id`", "syntax error (line 1 column 16)"},
		{"/disk add slot=a\\b", "syntax error (line 1 column 17)"},
		{"/disk set [find slot=a", "syntax error (line 1 column 11)"},
		{"/disk set [find slot=a) ]", "syntax error (line 1 column 23)"},
		{"/disk set [print] file-size=1G", "bad command name print (line 1 column 12)"},
		{"/disk set [find slot=[find]]", "syntax error (line 1 column 22)"},
		{"/disk print where", ""},
		{"/disk print where nosuch=1", "syntax error (line 1 column 19)"},
		{"/disk print where slot=a and", "syntax error (line 1 column 29)"},
		{"/disk print where (slot=a", "syntax error (line 1 column 19)"},
		{"/disk print where slot=a)", "syntax error (line 1 column 25)"},
		{`/disk print where slot~"("`, "syntax error (line 1 column 24)"},
		{"/disk print where slot<a", "syntax error (line 1 column 23)"},
		{"/disk print where slot=a; /system reboot", "expected end of command (line 1 column 25)"},
		{"/disk print where " + strings.Repeat("!", 200) + "slot=a", "syntax error (line 1 column 84)"},
		{"/disk print detail? ", "syntax error (line 1 column 19)"},
	} {
		_, err := parseCommand(tc.line)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.line, got, tc.want)
		}
	}
}

func TestWhere(t *testing.T) {
	item := props{
		{key: "type", raw: "file"},
		{key: "slot", raw: "pvc-abc", kind: kQuoted},
		{key: "size", raw: "53687091200", kind: kBytes},
		{key: "nvme-tcp-export", raw: "yes"},
		{key: "file-path", raw: "/storage-pool/k8s/pvc-abc.img"},
	}
	for cond, want := range map[string]bool{
		`slot=pvc-abc`:                           true,
		`slot="pvc-abc"`:                         true,
		`slot=pvc`:                               false,
		`slot!=pvc-abc`:                          false,
		`slot!=other`:                            true,
		`slot~"^pvc-"`:                           true,
		`slot~"pvc-\$"`:                          false,
		`slot~"b"`:                               true,
		`slot~"^snap-"`:                          false,
		`size=50G`:                               true,
		`size=53687091200`:                       true,
		`size=1G`:                                false,
		`nvme-tcp-export=yes`:                    true,
		`nvme-tcp-export=true`:                   true,
		`nvme-tcp-export`:                        true,
		`!nvme-tcp-export`:                       false,
		`slot=pvc-abc and type=file`:             true,
		`slot=pvc-abc && type=partition`:         false,
		`slot=pvc-abc type=file`:                 true,
		`slot=x or type=file`:                    true,
		`slot=x || type=partition`:               false,
		`!slot=x`:                                true,
		`!(slot=pvc-abc)`:                        false,
		`(slot=x or slot=pvc-abc) and type=file`: true,
		`slot=x or slot=pvc-abc and type=partition`:           false,
		`(slot=x or slot=pvc-abc) and !(type=file)`:           false,
		`file-path="/storage-pool/k8s/pvc-abc.img"`:           true,
		`file-path~"^/storage-pool/k8s/"`:                     true,
		`nvme-tcp-server-nqn=""`:                              true,
		`( slot=pvc-abc )`:                                    true,
		`slot=pvc-abc and (type=x or (size=50G))`:             true,
		`!!slot=pvc-abc`:                                      true,
		`slot~"[a-c]{3}\$" and !(slot~"^snap-") and size!=1G`: true,
	} {
		cmd, err := parseCommand("/disk print detail where " + cond)
		if err != nil {
			t.Errorf("%q: %v", cond, err)
			continue
		}
		if got := cmd.where.eval(item); got != want {
			t.Errorf("%q = %v, want %v", cond, got, want)
		}
		// The same condition works inside [find].
		cmd, err = parseCommand("/disk remove [find " + cond + "]")
		if err != nil {
			t.Errorf("[find %s]: %v", cond, err)
			continue
		}
		if got := cmd.args[0].val.find.cond.eval(item); got != want {
			t.Errorf("[find %s] = %v, want %v", cond, got, want)
		}
	}
}

// FuzzParse checks that no input makes the tokenizer panic, and that every
// rejection is a console error with a plausible column.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"/disk print detail where slot~\"^pvc-\"",
		"/disk add type=file file-path=/storage-pool/k8s/a.img file-size=10G slot=a nvme-tcp-export=yes",
		"/disk set [find slot=a] file-size=20G",
		"/file remove [find name=\"storage-pool/k8s/a.img\"]",
		"/disk print where (slot=a or !(type=file)) and size!=1G",
		"/disk add slot=\"\\\"$x\\41\"; /system reboot",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err == nil {
			if cmd == nil || cmd.menu == nil {
				t.Fatalf("%q: nil command without error", line)
			}
			return
		}
		ce, ok := err.(*cliError)
		if !ok {
			t.Fatalf("%q: error %T is not a console error", line, err)
		}
		if i := strings.Index(ce.msg, "(line 1 column "); i >= 0 {
			var col int
			for _, c := range ce.msg[i+len("(line 1 column "):] {
				if c < '0' || c > '9' {
					break
				}
				col = col*10 + int(c-'0')
			}
			if col < 1 || col > len(line)+1 {
				t.Fatalf("%q: column %d out of range: %s", line, col, ce.msg)
			}
		}
		if !utf8.ValidString(ce.msg) && utf8.ValidString(line) {
			t.Fatalf("%q: invalid error text %q", line, ce.msg)
		}
	})
}

func TestDollarIsNeverExpanded(t *testing.T) {
	for _, line := range []string{`/disk print where slot~"pvc-$"`, `/disk add slot=$slot`, `/disk add slot="$(x)"`} {
		if _, err := parseCommand(line); err == nil || !strings.HasPrefix(err.Error(), "syntax error") {
			t.Errorf("%q: got %v, want a syntax error", line, err)
		}
	}
}
