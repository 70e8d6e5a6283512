package jsonscan

import (
	"errors"
	"strings"
	"testing"
)

func TestMembers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     string // key=value pairs joined by ";"
		err      bool
	}{
		{"empty object", ` { } `, "", false},
		{"members in order", `{"a":1,"b":"x","c":{"d":[1,"]}"]},"e":null}`, `a=1;b="x";c={"d":[1,"]}"]};e=null`, false},
		{"escaped quote and key", `{"k\u0065y":"a\"b","z":true}`, `key="a\"b";z=true`, false},
		{"white space kept out of values", "{ \"a\" :\t[ 1 , 2 ] \n}", "a=[ 1 , 2 ]", false},
		{"not an object", `[1]`, "", true},
		{"cut short", `{"a":1`, "a=1", true},
		{"missing colon", `{"a" 1}`, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			err := Members([]byte(tc.in), func(k string, v []byte) error {
				got = append(got, k+"="+string(v))
				return nil
			})
			if (err != nil) != tc.err || err != nil && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Members(%s) error %v, want error %v", tc.in, err, tc.err)
			}
			if s := strings.Join(got, ";"); s != tc.want {
				t.Fatalf("Members(%s) = %s, want %s", tc.in, s, tc.want)
			}
		})
	}
}

// A value handed out cannot grow into the bytes after it.
func TestMembersClipsValues(t *testing.T) {
	t.Parallel()
	in := []byte(`{"a":[1],"b":2}`)
	_ = Members(in, func(k string, v []byte) error {
		if k == "a" {
			_ = append(v, 'X')
		}
		return nil
	})
	if string(in) != `{"a":[1],"b":2}` {
		t.Fatalf("input changed to %s", in)
	}
}

func TestElementsAndString(t *testing.T) {
	t.Parallel()
	var got []string
	if err := Elements([]byte(`[ "a", {"b":[2]}, 3 ]`), func(i int, v []byte) error {
		got = append(got, string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(got, "|"); s != `"a"|{"b":[2]}|3` {
		t.Fatalf("Elements = %s", s)
	}
	for in, want := range map[string]string{`"plain"`: "plain", `"tab\there"`: "tab\there", `"\u00e9"`: "é"} {
		if s, err := String([]byte(in)); err != nil || s != want {
			t.Fatalf("String(%s) = %q, %v; want %q", in, s, err, want)
		}
	}
}
