package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
)

// InstallHint is the command that installs the binaries this package needs.
const InstallHint = "apt-get install postgresql"

const notInstalledMsg = "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or PATH: install them (Debian/Ubuntu: " +
	InstallHint + "; macOS: brew install postgresql) — tiercache's CDC tests need a real PostgreSQL"

// ErrNotInstalled is returned by StartE when initdb or postgres is missing.
var ErrNotInstalled = errors.New(notInstalledMsg)

// binaries are the PostgreSQL programs a Server runs, all from one directory
// so that their versions agree.
type binaries struct {
	initdb, postgres, psql string
}

// debianBinDirs is where Debian and Ubuntu install each major version.
const debianBinDirs = "/usr/lib/postgresql/*/bin"

// findBinaries looks in the newest /usr/lib/postgresql/<version>/bin first,
// then in PATH.
func findBinaries() (binaries, error) { return findBinariesIn(debianBinDirs) }

// findBinariesIn is findBinaries with the versioned directories' glob.
func findBinariesIn(glob string) (binaries, error) {
	dirs, _ := filepath.Glob(glob)
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, dir := range dirs {
		if b, ok := binariesIn(dir); ok {
			return b, nil
		}
	}
	initdb, err := exec.LookPath("initdb")
	if err != nil {
		return binaries{}, ErrNotInstalled
	}
	// Take the sibling programs of the initdb found, through its symlinks
	// (Debian links /usr/bin/initdb-like wrappers into its versioned dirs).
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		if b, ok := binariesIn(filepath.Dir(real)); ok {
			return b, nil
		}
	}
	if b, ok := binariesIn(filepath.Dir(initdb)); ok {
		return b, nil
	}
	return binaries{}, ErrNotInstalled
}

// majorOf returns the version number in /usr/lib/postgresql/<version>/bin.
func majorOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func binariesIn(dir string) (binaries, bool) {
	b := binaries{
		initdb:   filepath.Join(dir, "initdb"),
		postgres: filepath.Join(dir, "postgres"),
		psql:     filepath.Join(dir, "psql"),
	}
	for _, p := range []string{b.initdb, b.postgres} {
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return binaries{}, false
		}
	}
	if _, err := os.Stat(b.psql); err != nil {
		b.psql = "" // Psql then looks in PATH
	}
	return b, true
}

// account is the OS user that runs initdb and postgres.
type account struct {
	name     string
	uid, gid uint32
}

// serverAccount returns nil when the test may run PostgreSQL as itself, and
// the "postgres" user when it runs as root, which PostgreSQL refuses.
func serverAccount() (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, and PostgreSQL refuses to run as root, but there is no \"postgres\" user to run it as (%v): %s creates one", err, InstallHint)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("pgtest: user postgres has a non-numeric uid %q or gid %q", u.Uid, u.Gid)
	}
	return &account{name: u.Username, uid: uint32(uid), gid: uint32(gid)}, nil
}

// tempParent returns the directory to create the server's directory in: the
// system's temp dir, unless the server runs as another user who could not
// reach into it, in which case /tmp.
func tempParent(owner *account) string {
	dir := os.TempDir()
	if owner == nil {
		return dir
	}
	if st, err := os.Stat(dir); err == nil && st.Mode().Perm()&0o001 != 0 {
		return dir
	}
	return "/tmp"
}
