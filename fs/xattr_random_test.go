package fs_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestXattrRandom sets and removes attributes of many sizes on a file
// whose data fork grows meanwhile (inline area and extents share the fork).
func TestXattrRandom(t *testing.T) {
	e := newEnv(t, 64<<20, layoutDefault)
	f := e.mknod(root, "f")
	rng := rand.New(rand.NewPCG(1, 1))
	model := map[string][]byte{}
	for i := range 1500 {
		nm := fmt.Sprintf("user.x%d", rng.IntN(8))
		if rng.IntN(4) == 0 {
			err := e.f.RemoveXattr(f, nm)
			if _, ok := model[nm]; ok != (err == nil) {
				t.Fatalf("op %d remove %s: %v", i, nm, err)
			}
			delete(model, nm)
		} else {
			v := bytes.Repeat([]byte{byte(rng.IntN(256))}, rng.IntN(3000))
			if rng.IntN(2) == 0 {
				v = v[:min(len(v), 20)]
			}
			if err := e.f.SetXattr(f, nm, v, 0); err != nil {
				t.Fatalf("op %d set: %v", i, err)
			}
			model[nm] = v
		}
		if rng.IntN(5) == 0 {
			e.write(f, []byte("x"), int64(rng.IntN(100))*8192)
		}
		for k, v := range model {
			b := make([]byte, 4000)
			n, err := e.f.GetXattr(f, k, b)
			if err != nil || !bytes.Equal(b[:n], v) {
				t.Fatalf("op %d: get %s: %v", i, k, err)
			}
		}
		if _, err := e.f.ListXattr(f, nil); err != nil {
			t.Fatalf("op %d: list: %v", i, err)
		}
	}
}
