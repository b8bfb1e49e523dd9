package rdscsi

import (
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// StorageClass parameter keys. They are also the volume context keys the
// node reads, so a PV carries everything needed to connect it.
const (
	ParamVolumePath       = "volumePath"
	ParamNVMeAddress      = "nvmeAddress"
	ParamNVMePort         = "nvmePort"
	ParamCtrlLossTmo      = "ctrlLossTmo"
	ParamReconnectDelay   = "reconnectDelay"
	ParamKeepAliveTmo     = "keepAliveTmo"
	ParamMigrationTimeout = "migrationTimeoutSeconds"
	// ContextNQN is the volume and publish context key of the NQN.
	ContextNQN = "nqn"
)

// DefaultNVMePort is the NVMe/TCP port used when a StorageClass sets none.
const DefaultNVMePort = 4420

// reservedPrefix marks the parameters a CO adds for itself (PVC and PV
// names, provisioner secrets); they are accepted and ignored.
const reservedPrefix = "csi.storage.k8s.io/"

// volumeParams are the validated StorageClass parameters of a volume.
type volumeParams struct {
	volumePath string // absolute directory on a pool, e.g. /storage-pool/k8s
	address    string
	port       int
	// tunables holds the NVMe/TCP settings passed through to the node, in
	// canonical form, keyed by parameter name; unset ones are absent.
	tunables         map[string]string
	migrationTimeout time.Duration
}

// pool is the pool (mount point) holding the volume directory. The
// directory passed checkVolumePath, so PoolOf accepts it; were it to
// fail, "" is a pool every command refuses.
func (p volumeParams) pool() string {
	pool, _ := routeros.PoolOf(p.volumePath)
	return pool
}

// tunableMin is the smallest accepted value of each NVMe/TCP tunable, in
// seconds (ctrlLossTmo -1 retries forever). The controller validates
// parameters and the node validates contexts against this one table.
var tunableMin = map[string]int{
	ParamCtrlLossTmo:    -1,
	ParamReconnectDelay: 1,
	ParamKeepAliveTmo:   1,
}

// paramSetters validates one parameter into volumeParams. It is the only
// description of the keys, shared by StorageClass parameters and the
// volume context read back on publish, so the two cannot drift apart.
var paramSetters = map[string]func(p *volumeParams, v string) error{
	ParamVolumePath: func(p *volumeParams, v string) (err error) {
		p.volumePath, err = checkVolumePath(v)
		return err
	},
	ParamNVMeAddress: func(p *volumeParams, v string) (err error) {
		p.address, err = checkAddress(v)
		return err
	},
	ParamNVMePort: func(p *volumeParams, v string) (err error) {
		p.port, err = checkPort(v)
		return err
	},
	ParamCtrlLossTmo:    setTunable(ParamCtrlLossTmo),
	ParamReconnectDelay: setTunable(ParamReconnectDelay),
	ParamKeepAliveTmo:   setTunable(ParamKeepAliveTmo),
	ParamMigrationTimeout: func(p *volumeParams, v string) (err error) {
		p.migrationTimeout, err = checkMigrationTimeout(v)
		return err
	},
}

func setTunable(key string) func(p *volumeParams, v string) error {
	return func(p *volumeParams, v string) error {
		s, err := checkSeconds(key, v, tunableMin[key])
		if err != nil {
			return err
		}
		if p.tunables == nil {
			p.tunables = map[string]string{}
		}
		p.tunables[key] = s
		return nil
	}
}

// parseParams fills the controller defaults and applies m through
// paramSetters. strict refuses keys outside the table (StorageClass
// parameters, so that a typo fails loudly); otherwise they are skipped
// (a volume context, to which a CO may add its own keys). Keys with the
// CO's reserved prefix are always skipped.
func (o *controllerOptions) parseParams(m map[string]string, strict bool) (volumeParams, error) {
	p := volumeParams{
		volumePath: o.volumePath,
		address:    o.nvmeAddress,
		port:       o.nvmePort,
	}
	for k, v := range m {
		set, known := paramSetters[k]
		switch {
		case known:
			if err := set(&p, v); err != nil {
				return volumeParams{}, err
			}
		case strict && !strings.HasPrefix(k, reservedPrefix):
			return volumeParams{}, errorf(ErrInvalidArgument, "unknown parameter %q", clipInput(k))
		}
	}
	return p, nil
}

// parseVolumeParams validates StorageClass parameters, filling in the
// controller defaults. Unknown keys are refused.
func (o *controllerOptions) parseVolumeParams(params map[string]string) (volumeParams, error) {
	p, err := o.parseParams(params, true)
	if err != nil {
		return volumeParams{}, err
	}
	if p.volumePath == "" {
		return volumeParams{}, errorf(ErrInvalidArgument, "parameter %s is not set and the controller has no default", ParamVolumePath)
	}
	return p, nil
}

// parseVolumeContext reads back a volume context given to
// ControllerPublishVolume. Unknown keys are ignored (a CO may add its
// own); known ones are validated because they reach the node.
func (o *controllerOptions) parseVolumeContext(vc map[string]string) (volumeParams, error) {
	return o.parseParams(vc, false)
}

// requireAddress fails when no NVMe/TCP address is known: a volume
// without one could never be connected.
func (p volumeParams) requireAddress() error {
	if p.address == "" {
		return errorf(ErrInvalidArgument, "parameter %s is not set and the controller has no default", ParamNVMeAddress)
	}
	return nil
}

// volumeContext is what the node needs, stored with the PV.
func (p volumeParams) volumeContext(nqn string, port int) map[string]string {
	c := map[string]string{
		ContextNQN:       nqn,
		ParamNVMeAddress: p.address,
		ParamNVMePort:    strconv.Itoa(port),
		ParamVolumePath:  p.volumePath,
	}
	p.addTunables(c)
	if p.migrationTimeout > 0 {
		c[ParamMigrationTimeout] = strconv.FormatInt(int64(p.migrationTimeout/time.Second), 10)
	}
	return c
}

func (p volumeParams) addTunables(c map[string]string) {
	for k, v := range p.tunables {
		c[k] = v
	}
}

// snapshotParams are the VolumeSnapshotClass parameters.
type snapshotParams struct {
	// volumePath is the directory of the snapshot's backing file; ""
	// means the directory of the source volume.
	volumePath string
}

func parseSnapshotParams(params map[string]string) (snapshotParams, error) {
	var p snapshotParams
	for k, v := range params {
		if strings.HasPrefix(k, reservedPrefix) {
			continue
		}
		var err error
		switch k {
		case ParamVolumePath:
			p.volumePath, err = checkVolumePath(v)
		default:
			err = errorf(ErrInvalidArgument, "unknown snapshot parameter %q", clipInput(k))
		}
		if err != nil {
			return snapshotParams{}, err
		}
	}
	return p, nil
}

// longestFileName is the longest backing file name this package writes
// (a snapshot's, with a creation time of the most digits parseFilePath
// reads): a volume directory must leave room for it.
var longestFileName = path.Base(snapshotFilePath("/",
	SnapshotIDForName(""), VolumeIDForName(""), time.Unix(999_999_999_999, 0)))

// checkVolumePath accepts an absolute directory below a pool mount point,
// such as /storage-pool/k8s, as RouterOS does (routeros.PoolOf: a valid
// path on a valid pool name), with room for the backing file names written
// into it. Trailing slashes are dropped.
func checkVolumePath(v string) (string, error) {
	const want = "want an absolute directory below a pool, such as /storage-pool/k8s"
	dir := strings.TrimRight(v, "/")
	if dir == "" {
		return "", errorf(ErrInvalidArgument, "%s %q: %s", ParamVolumePath, clipInput(v), want)
	}
	pool, err := routeros.PoolOf(dir)
	if err != nil {
		return "", errorf(ErrInvalidArgument, "%s: %v; %s", ParamVolumePath, err, want)
	}
	if dir == "/"+pool {
		return "", errorf(ErrInvalidArgument, "%s %q is the mount point of pool %s; %s", ParamVolumePath, clipInput(v), pool, want)
	}
	if err := routeros.ValidPath(path.Join(dir, longestFileName)); err != nil {
		return "", errorf(ErrInvalidArgument, "%s %q is too long for the backing files below it: %v; %s", ParamVolumePath, clipInput(v), err, want)
	}
	return dir, nil
}

// checkAddress accepts an IP address or a DNS host name.
func checkAddress(v string) (string, error) {
	if ip := net.ParseIP(v); ip != nil {
		return ip.String(), nil
	}
	ok := len(v) > 0 && len(v) <= 253
	for _, label := range strings.Split(v, ".") {
		if !ok {
			break
		}
		ok = len(label) > 0 && len(label) <= 63 && label[0] != '-' && label[len(label)-1] != '-'
		for i := 0; ok && i < len(label); i++ {
			b := label[i]
			ok = b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-'
		}
	}
	if !ok {
		return "", errorf(ErrInvalidArgument, "%s %q is not an IP address or host name", ParamNVMeAddress, clipInput(v))
	}
	return v, nil
}

func checkPort(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, errorf(ErrInvalidArgument, "%s %q is not a port number", ParamNVMePort, clipInput(v))
	}
	return n, nil
}

// checkSeconds accepts a whole number of seconds >= minimum, returned in
// canonical form.
func checkSeconds(key, v string, minimum int) (string, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < minimum || n > 1<<20 {
		return "", errorf(ErrInvalidArgument, "%s %q must be a whole number of seconds >= %d", key, clipInput(v), minimum)
	}
	return strconv.Itoa(n), nil
}

func checkMigrationTimeout(v string) (time.Duration, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || n > 7*24*3600 {
		return 0, errorf(ErrInvalidArgument, "%s %q must be a whole number of seconds between 1 and 604800", ParamMigrationTimeout, clipInput(v))
	}
	return time.Duration(n) * time.Second, nil
}

// clipInput shortens hostile input before it is echoed in an error.
func clipInput(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
