package routeros

import "testing"

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name           string
		stdout, stderr string
		exit           int
		want           Class
		line           string
	}{
		{"silent success", "", "", 0, ClassOK, ""},
		{"print output", " 0  type=file slot=\"pvc-1\" comment=\"in use; already exists\"\r\n", "", 0, ClassOK, ""},
		{"no space stdout", "failure: not enough space\r\n", "", 0, ClassNoSpace, "failure: not enough space"},
		{"no space stderr exit 1", "", "failure: not enough space\n", 1, ClassNoSpace, "failure: not enough space"},
		{"not found", "failure: no such item\r\n", "", 0, ClassNotFound, "failure: no such item"},
		{"not found bare", "no such item\r\n", "", 0, ClassNotFound, "no such item"},
		{"exists", "failure: item with this name already exists\r\n", "", 0, ClassExists, "failure: item with this name already exists"},
		{"exists bare", "already exists\r\n", "", 1, ClassExists, "already exists"},
		{"duplicate slot", "failure: duplicate slot\r\n", "", 0, ClassExists, "failure: duplicate slot"},
		{"file exists", "failure: file exists\r\n", "", 0, ClassExists, "failure: file exists"},
		{"in use", "failure: disk is in use\r\n", "", 0, ClassInUse, "failure: disk is in use"},
		{"in use bare", "", "disk is in use", 0, ClassInUse, "disk is in use"},
		{"bad command", "bad command name monitor-traffic (line 1 column 7)\r\n", "", 0, ClassInvalid, "bad command name monitor-traffic (line 1 column 7)"},
		{"expected end", "", "expected end of command (line 1 column 30)", 0, ClassInvalid, "expected end of command (line 1 column 30)"},
		{"syntax", "syntax error (line 1 column 5)", "", 0, ClassInvalid, "syntax error (line 1 column 5)"},
		{"expected command", "expected command name (line 1 column 1)", "", 0, ClassInvalid, "expected command name (line 1 column 1)"},
		{"invalid value", "invalid value for argument file-size\r\n", "", 0, ClassInvalid, "invalid value for argument file-size"},
		{"no match", "input does not match any value of type\r\n", "", 0, ClassInvalid, "input does not match any value of type"},
		{"failure invalid", "failure: invalid file path\r\n", "", 0, ClassInvalid, "failure: invalid file path"},
		{"other failure", "failure: could not create file\r\n", "", 0, ClassOther, "failure: could not create file"},
		{"ansi", "\x1b[31mfailure: not enough space\x1b[0m\r\n", "", 0, ClassNoSpace, "failure: not enough space"},
		{"specific wins over other", "failure: something odd\r\nfailure: no such item\r\n", "", 0, ClassNotFound, "failure: no such item"},
		{"stderr first", "failure: not enough space", "failure: no such item", 0, ClassNotFound, "failure: no such item"},
		{"exit status with text", "", "ssh: something broke\n", 255, ClassOther, "ssh: something broke"},
		{"exit status with no text", "", "", 1, ClassOther, "exit status 1"},
		{"unknown text exit 0", "interrupted\r\n", "", 0, ClassOK, ""},
		{"indented failure", "  failure: no such item  \r\n", "", 0, ClassNotFound, "failure: no such item"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, line := Classify(tc.stdout, tc.stderr, tc.exit)
			if c != tc.want || line != tc.line {
				t.Errorf("Classify = %v, %q; want %v, %q", c, line, tc.want, tc.line)
			}
		})
	}
}

func TestClassString(t *testing.T) {
	for c, want := range map[Class]string{
		ClassOK: "ok", ClassNotFound: "not_found", ClassExists: "exists", ClassNoSpace: "no_space",
		ClassInvalid: "invalid", ClassInUse: "in_use", ClassOther: "other", Class(42): "class(42)", Class(-1): "class(-1)",
	} {
		if got := c.String(); got != want {
			t.Errorf("Class(%d).String() = %q, want %q", int(c), got, want)
		}
	}
}
