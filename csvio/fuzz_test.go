package csvio

import (
	"bytes"
	"testing"
)

// FuzzRead: any bytes give a series or an error naming the input, never a
// panic, and a series' columns line up.
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		"timestamp,value\n1700000000,1.5\n", "t,v\n2023-11-14 22:13:21,\n", "t,v,x\n2023-11-14T22:13:22Z,NaN,c\n",
		"t\n", "", "t,v\n\"1,2\n", "t,v\n1e300,1\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		s, err := Read(bytes.NewReader(in), "fuzz.csv")
		if err != nil {
			if !bytes.Contains([]byte(err.Error()), []byte("fuzz.csv")) {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(s.Rows) != len(s.Times) || len(s.Rows) != len(s.Values) {
			t.Fatalf("columns out of step: %d rows, %d times, %d values", len(s.Rows), len(s.Times), len(s.Values))
		}
	})
}
