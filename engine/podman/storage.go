package podman

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentd-dev/agentd/engine"
)

// StoredContainer is one container as containers/storage records it in
// STORAGE/DRIVER-containers/containers.json: every container podman (or
// buildah) created in that storage, in any state.
type StoredContainer struct {
	ID string
	// Name is podman's name for it (metadata "name", else the first of names).
	Name string
	// ImageID is the storage's image ID.
	ImageID string
	// ImageName is the image reference it was created from ("localhost/x:1").
	ImageName string
	// Created is when the storage record was made.
	Created time.Time
	// Podman is true when podman made it (its metadata names it); buildah's
	// working containers are not podman's and not reported.
	Podman bool
}

// storedContainerJSON is the part of a containers.json entry agentd uses.
type storedContainerJSON struct {
	ID       string   `json:"id"`
	Names    []string `json:"names"`
	Image    string   `json:"image"`
	Metadata string   `json:"metadata"`
	Created  string   `json:"created"`
}

// storedMetadata is podman's metadata string of a storage container (JSON
// in a JSON string).
type storedMetadata struct {
	ImageName string `json:"image-name"`
	ImageID   string `json:"image-id"`
	Name      string `json:"name"`
	CreatedAt int64  `json:"created-at"`
}

// ParseContainersJSON decodes containers/storage's containers.json. An
// entry without an ID is an error (engine.ErrBadAnswer); a metadata string
// that is not JSON leaves the entry with what the rest says (not podman's).
func ParseContainersJSON(b []byte) ([]StoredContainer, error) {
	var raw []storedContainerJSON
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("containers.json: %w", err)
	}
	out := make([]StoredContainer, 0, len(raw))
	for i, r := range raw {
		if r.ID == "" {
			return nil, fmt.Errorf("containers.json: entry %d without an ID: %w", i, engine.ErrBadAnswer)
		}
		c := StoredContainer{ID: r.ID, ImageID: r.Image, Created: engine.ParseTime(r.Created)}
		if len(r.Names) > 0 {
			c.Name = r.Names[0]
		}
		var md storedMetadata
		if r.Metadata != "" && json.Unmarshal([]byte(r.Metadata), &md) == nil {
			c.Podman = md.Name != "" || md.ImageName != ""
			if md.Name != "" {
				c.Name = md.Name
			}
			c.ImageName = md.ImageName
			if c.ImageID == "" {
				c.ImageID = md.ImageID
			}
			if c.Created.IsZero() && md.CreatedAt > 0 {
				c.Created = time.Unix(md.CreatedAt, 0)
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// ParseExitFile reads the exit code conmon writes to EXITDIR/ID: a decimal
// number, possibly followed by a newline.
func ParseExitFile(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	n, err := strconv.Atoi(s)
	if err != nil || n < -1 || n > 255 {
		return 0, fmt.Errorf("exit file %.20q: %w", b, engine.ErrBadAnswer)
	}
	return n, nil
}

// ParsePIDFile reads a runtime's PID file: a positive decimal number.
func ParsePIDFile(b []byte) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("pid file %.20q: %w", b, engine.ErrBadAnswer)
	}
	return n, nil
}
