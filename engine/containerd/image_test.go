package containerd

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
)

// fakeStore stands in for containerd's images and content services.
type fakeStore struct {
	images map[string]*apitypes.Descriptor
	blobs  map[string][]byte
	reads  int
	gets   int
}

func (f *fakeStore) Get(_ context.Context, in *imagesapi.GetImageRequest, _ ...grpc.CallOption) (*imagesapi.GetImageResponse, error) {
	f.gets++
	d, ok := f.images[in.GetName()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "image %q: not found", in.GetName())
	}
	return &imagesapi.GetImageResponse{Image: &imagesapi.Image{Name: in.GetName(), Target: d}}, nil
}

func (f *fakeStore) Read(_ context.Context, in *contentapi.ReadContentRequest, _ ...grpc.CallOption) (contentapi.Content_ReadClient, error) {
	f.reads++
	b, ok := f.blobs[in.GetDigest()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "content digest %s: not found", in.GetDigest())
	}
	return &fakeReadStream{data: b}, nil
}

// fakeReadStream sends a blob in chunks of 1000 bytes.
type fakeReadStream struct {
	grpc.ClientStream
	data []byte
	off  int
}

func (s *fakeReadStream) Recv() (*contentapi.ReadContentResponse, error) {
	if s.off >= len(s.data) {
		return nil, io.EOF
	}
	n := min(1000, len(s.data)-s.off)
	r := &contentapi.ReadContentResponse{Offset: int64(s.off), Data: s.data[s.off : s.off+n]}
	s.off += n
	return r, nil
}

// add stores a JSON document and returns its descriptor.
func (f *fakeStore) add(t *testing.T, mediaType string, doc any) ocispec.Descriptor {
	t.Helper()
	b, ok := doc.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(doc); err != nil {
			t.Fatal(err)
		}
	}
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
	f.blobs[d] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.Digest(d), Size: int64(len(b))}
}

func TestCtrdImageResolver(t *testing.T) {
	here := platforms.DefaultSpec()
	other := ocispec.Platform{OS: "linux", Architecture: "s390x"}
	if here.Architecture == "s390x" {
		other.Architecture = "riscv64"
	}
	f := &fakeStore{images: map[string]*apitypes.Descriptor{}, blobs: map[string][]byte{}}
	manifest := func(config string) any {
		return ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.Digest(config)}}
	}
	cfgHere, cfgOther := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	mHere := f.add(t, ocispec.MediaTypeImageManifest, manifest(cfgHere))
	mOther := f.add(t, mediaTypeDockerManifest, manifest(cfgOther))
	mHere.Platform, mOther.Platform = &here, &other
	index := f.add(t, ocispec.MediaTypeImageIndex, ocispec.Index{Manifests: []ocispec.Descriptor{mOther, mHere}})
	onlyOther := f.add(t, mediaTypeDockerManifestList, ocispec.Index{Manifests: []ocispec.Descriptor{mOther}})
	nested := f.add(t, ocispec.MediaTypeImageIndex, ocispec.Index{Manifests: []ocispec.Descriptor{index}})
	noConfig := f.add(t, ocispec.MediaTypeImageManifest, ocispec.Manifest{})
	garbage := f.add(t, ocispec.MediaTypeImageManifest, []byte("{not json"))
	huge := f.add(t, ocispec.MediaTypeImageManifest, []byte(strings.Repeat(" ", maxImageDocumentSize+1)))
	desc := func(d ocispec.Descriptor) *apitypes.Descriptor {
		return &apitypes.Descriptor{MediaType: d.MediaType, Digest: d.Digest.String(), Size: d.Size}
	}
	f.images["manifest"] = desc(mHere)
	f.images["docker-manifest"] = desc(mOther)
	f.images["index"] = desc(index)
	f.images["nested"] = desc(nested)
	f.images["only-other"] = desc(onlyOther)
	f.images["no-config"] = desc(noConfig)
	f.images["garbage"] = desc(garbage)
	f.images["huge"] = desc(huge)
	f.images["missing-blob"] = &apitypes.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:" + strings.Repeat("c", 64)}
	f.images["config-target"] = &apitypes.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cfgHere}
	f.images["no-target"] = &apitypes.Descriptor{}

	for _, tc := range []struct {
		ref, want, err string
	}{
		{ref: "manifest", want: cfgHere},
		{ref: "docker-manifest", want: cfgOther},
		{ref: "index", want: cfgHere},
		{ref: "nested", want: cfgHere},
		{ref: "only-other", want: onlyOther.Digest.String(), err: "no manifest for platform"},
		{ref: "no-config", want: noConfig.Digest.String(), err: "no config descriptor"},
		{ref: "garbage", want: garbage.Digest.String(), err: "manifest " + garbage.Digest.String()},
		{ref: "huge", want: huge.Digest.String(), err: "too large"},
		{ref: "missing-blob", want: "sha256:" + strings.Repeat("c", 64), err: "not found"},
		{ref: "config-target", want: cfgHere, err: "neither an index nor a manifest"},
		{ref: "no-target", err: "no target"},
		{ref: "absent", err: "image absent"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			r := newCtrdImageResolver(f, f)
			got, err := r.imageID(context.Background(), tc.ref)
			if got != tc.want {
				t.Errorf("imageID = %q, want %q", got, tc.want)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("error %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want one containing %q", err, tc.err)
			}
			if tc.ref == "absent" && !engine.IsGRPCNotFound(err) {
				t.Errorf("error %v for an absent image is not NotFound", err)
			}
		})
	}

	t.Run("cached", func(t *testing.T) {
		r := newCtrdImageResolver(f, f)
		before := f.reads
		for range 3 {
			if got, err := r.imageID(context.Background(), "index"); err != nil || got != cfgHere {
				t.Fatalf("imageID = %q, %v", got, err)
			}
		}
		if n := f.reads - before; n != 2 {
			t.Fatalf("%d blob reads for three lookups of one image, want 2 (index and manifest, once)", n)
		}
	})

	t.Run("a reference is looked up once per refTTL and per namespace", func(t *testing.T) {
		r := newCtrdImageResolver(f, f)
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		r.now = func() time.Time { return now }
		look := func(ns string) {
			t.Helper()
			if got, err := r.imageID(namespaces.WithNamespace(context.Background(), ns), "index"); err != nil || got != cfgHere {
				t.Fatalf("imageID = %q, %v", got, err)
			}
		}
		before := f.gets
		look("a")
		look("a")
		look("b")
		if n := f.gets - before; n != 2 {
			t.Fatalf("%d image lookups for three of one reference in two namespaces, want 2", n)
		}
		now = now.Add(refTTL)
		look("a")
		if n := f.gets - before; n != 3 {
			t.Fatalf("%d image lookups once the first is refTTL old, want 3", n)
		}
		before = f.gets
		_, _ = r.imageID(context.Background(), "absent")
		_, _ = r.imageID(context.Background(), "absent")
		if n := f.gets - before; n != 2 {
			t.Fatalf("%d lookups of an absent image, want 2: a failure is not remembered", n)
		}
	})
}

// TestContainerdImageIDIsDockers proves against the real containerd that the
// image ID agentd reports for a containerd container is the one Docker gives
// the same image (the config digest), not the manifest's digest.
func TestContainerdImageIDIsDockers(t *testing.T) {
	testbed.Require(t, testbed.Containerd, testbed.Docker)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{.Id}}", testbed.BusyboxImage).Output()
	if err != nil {
		t.Fatalf("docker image inspect %s: %v", testbed.BusyboxImage, err)
	}
	want := strings.TrimSpace(string(out))
	ns := enginetest.ContainerdNamespace(t)
	a := newTestContainerd(t)
	got, err := a.images.imageID(namespaces.WithNamespace(ctx, ns), "docker.io/"+testbed.BusyboxImage)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("image ID %s, Docker's is %s", got, want)
	}
}
