package tieredotel

import (
	"testing"

	"github.com/tiercache/tiercache/tiered/internal/adaptertest"
)

func TestMain(m *testing.M) { adaptertest.Main(m) }

// The shared fixtures, by short names.
var (
	newClient   = adaptertest.NewClient
	newKeyspace = adaptertest.NewKeyspace
	ctxT        = adaptertest.Ctx
	fieldValue  = adaptertest.FieldValue
	settle      = adaptertest.Settle
)

type user = adaptertest.User
