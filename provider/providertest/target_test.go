package providertest

import "testing"

// FuzzFrontendOf: any request path gives a frontend index or -1, never a
// panic; the kit's own paths give theirs back.
func FuzzFrontendOf(f *testing.F) {
	for _, s := range []string{kitPath + "f0/", kitPath + "f12/", holdPath + "h3/f1", "/", "", "/f", "/f-1", "/ready"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		if i := frontendOf(path); i < -1 {
			t.Fatalf("frontendOf(%q) = %d", path, i)
		}
	})
}

func TestFrontendOfKitPaths(t *testing.T) {
	for path, want := range map[string]int{kitPath + "f0/": 0, kitPath + "f12/": 12, holdPath + "h3/f1": 1, "/ready": -1, "/": -1} {
		if got := frontendOf(path); got != want {
			t.Errorf("frontendOf(%q) = %d, want %d", path, got, want)
		}
	}
}
