package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/platforms"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
)

// Media types of the image index and manifest documents, OCI's and Docker's.
const (
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
)

// maxImageDocumentSize bounds the index and manifest blobs read from
// containerd's content store; real ones are a few kilobytes.
const maxImageDocumentSize = 4 << 20

// maxImageIDCache bounds the cache of image IDs; it is emptied when full.
const maxImageIDCache = 4096

// ctrdImageResolver finds the image ID (the digest of the image's config, what
// Docker and CRI call the image ID) of containerd images through the images and
// content services: image record → target (an index or a manifest) → the
// manifest for this machine's platform → its config descriptor. The answer for
// a target digest never changes, so it is cached.
type ctrdImageResolver struct {
	images   ctrdImageGetter
	content  ctrdContentReader
	platform platforms.MatchComparer

	mu    sync.Mutex
	cache map[string]string // target digest → config digest
	// refs remembers for refTTL what a reference named: the inspects of
	// a storm of containers of one image ask the images service once, not
	// once each (a request of the engine's budget).
	refs map[string]refLookup // namespace NUL reference → its lookup
	now  func() time.Time
}

// refLookup is an image ID looked up by reference, and when.
type refLookup struct {
	id string
	at time.Time
}

// refTTL is how long an image reference's ID is taken as known: a tag
// pulled anew shows in containers created that much later at the latest.
const refTTL = 10 * time.Second

// ctrdImageGetter is the part of containerd's images service the resolver uses.
type ctrdImageGetter interface {
	Get(ctx context.Context, in *imagesapi.GetImageRequest, opts ...grpc.CallOption) (*imagesapi.GetImageResponse, error)
}

// ctrdContentReader is the part of containerd's content service the resolver uses.
type ctrdContentReader interface {
	Read(ctx context.Context, in *contentapi.ReadContentRequest, opts ...grpc.CallOption) (contentapi.Content_ReadClient, error)
}

func newCtrdImageResolver(images ctrdImageGetter, content ctrdContentReader) *ctrdImageResolver {
	return &ctrdImageResolver{
		images:   images,
		content:  content,
		platform: platforms.Default(),
		cache:    make(map[string]string),
		refs:     make(map[string]refLookup),
		now:      time.Now,
	}
}

// imageID returns the image ID of the image named ref in the namespace of ctx.
// When the config cannot be found, the target's digest is returned together
// with the error; when the image record itself is missing, "" and an error
// for which engine.IsGRPCNotFound holds.
func (r *ctrdImageResolver) imageID(ctx context.Context, ref string) (string, error) {
	ns, _ := namespaces.Namespace(ctx)
	key := ns + "\x00" + ref
	r.mu.Lock()
	l, ok := r.refs[key]
	r.mu.Unlock()
	if ok && r.now().Sub(l.at) < refTTL {
		return l.id, nil
	}
	id, err := r.lookup(ctx, ref)
	if err == nil {
		r.mu.Lock()
		if len(r.refs) >= maxImageIDCache {
			clear(r.refs)
		}
		r.refs[key] = refLookup{id: id, at: r.now()}
		r.mu.Unlock()
	}
	return id, err
}

// lookup is imageID without the reference cache.
func (r *ctrdImageResolver) lookup(ctx context.Context, ref string) (string, error) {
	resp, err := r.images.Get(ctx, &imagesapi.GetImageRequest{Name: ref})
	if err != nil {
		return "", fmt.Errorf("image %s: %w", ref, err)
	}
	target := resp.GetImage().GetTarget()
	if target.GetDigest() == "" {
		return "", fmt.Errorf("image %s: the record has no target", ref)
	}
	r.mu.Lock()
	id, ok := r.cache[target.GetDigest()]
	r.mu.Unlock()
	if ok {
		return id, nil
	}
	cfg, err := r.configDigest(ctx, target.GetMediaType(), target.GetDigest(), 0)
	if err != nil {
		return target.GetDigest(), fmt.Errorf("image %s: %w", ref, err)
	}
	r.mu.Lock()
	if len(r.cache) >= maxImageIDCache {
		clear(r.cache)
	}
	r.cache[target.GetDigest()] = cfg
	r.mu.Unlock()
	return cfg, nil
}

// configDigest follows an index or manifest blob to the config's digest.
func (r *ctrdImageResolver) configDigest(ctx context.Context, mediaType, digest string, depth int) (string, error) {
	if depth > 4 {
		return "", fmt.Errorf("blob %s: indexes nested too deep", digest)
	}
	switch mediaType {
	case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
		var m ocispec.Manifest
		if err := r.readJSON(ctx, "manifest", digest, &m); err != nil {
			return "", err
		}
		if m.Config.Digest == "" {
			return "", fmt.Errorf("manifest %s: no config descriptor", digest)
		}
		return m.Config.Digest.String(), nil
	case ocispec.MediaTypeImageIndex, mediaTypeDockerManifestList:
		var idx ocispec.Index
		if err := r.readJSON(ctx, "index", digest, &idx); err != nil {
			return "", err
		}
		m, ok := pickManifest(idx.Manifests, r.platform)
		if !ok {
			return "", fmt.Errorf("index %s: no manifest for platform %s", digest, platforms.DefaultString())
		}
		return r.configDigest(ctx, m.MediaType, m.Digest.String(), depth+1)
	default:
		return "", fmt.Errorf("blob %s: media type %q is neither an index nor a manifest", digest, mediaType)
	}
}

// pickManifest chooses, as containerd does, the best match for platform among
// an index's manifests; entries without a platform match any.
func pickManifest(ms []ocispec.Descriptor, platform platforms.MatchComparer) (ocispec.Descriptor, bool) {
	var cands []ocispec.Descriptor
	for _, m := range ms {
		if m.Platform == nil || platform.Match(*m.Platform) {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return ocispec.Descriptor{}, false
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].Platform == nil || cands[j].Platform == nil {
			return false
		}
		return platform.Less(*cands[i].Platform, *cands[j].Platform)
	})
	return cands[0], true
}

// readJSON reads the blob digest and decodes it into v; kind names the
// document in errors.
func (r *ctrdImageResolver) readJSON(ctx context.Context, kind, digest string, v any) error {
	b, err := r.read(ctx, digest)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: %w", kind, digest, err)
	}
	return nil
}

// read returns a whole blob of the content store, at most maxImageDocumentSize bytes.
func (r *ctrdImageResolver) read(ctx context.Context, digest string) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.content.Read(ctx, &contentapi.ReadContentRequest{Digest: digest})
	if err != nil {
		return nil, fmt.Errorf("blob %s: read: %w", digest, err)
	}
	var b []byte
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return b, nil
		}
		if err != nil {
			return nil, fmt.Errorf("blob %s: read: %w", digest, err)
		}
		if len(b)+len(resp.GetData()) > maxImageDocumentSize {
			return nil, fmt.Errorf("blob %s: larger than %d bytes, too large for an index or manifest", digest, maxImageDocumentSize)
		}
		b = append(b, resp.GetData()...)
	}
}
