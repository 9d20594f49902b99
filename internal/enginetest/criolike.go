package enginetest

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CRI methods CRIOLike answers itself.
const (
	criGetContainerEvents = "/runtime.v1.RuntimeService/GetContainerEvents"
	criVersion            = "/runtime.v1.RuntimeService/Version"
)

// CRIOLike serves, on a unix socket of the test's own, the CRI runtime
// service at endpoint as CRI-O with its default configuration answers it:
// GetContainerEvents ends the stream at once without an event (CRI-O's
// enable_pod_events = false), Version names the runtime "cri-o", and no other
// service (containerd's events, for one) is served. Every other CRI call is
// forwarded to the real runtime unchanged, so pods and containers are real.
// It returns the socket's path; the server stops when the test ends.
func CRIOLike(t *testing.T, endpoint string) string {
	t.Helper()
	backend, err := grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial CRI runtime %s: %v", endpoint, err)
	}
	sock := filepath.Join(t.TempDir(), "crio.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		return forwardCRI(ss, backend)
	}))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
		_ = backend.Close()
	})
	return sock
}

// forwardCRI answers one call as CRIOLike describes.
func forwardCRI(ss grpc.ServerStream, backend *grpc.ClientConn) error {
	method, _ := grpc.MethodFromServerStream(ss)
	switch {
	case method == criGetContainerEvents:
		return nil
	case len(method) < len("/runtime.v1.") || method[:len("/runtime.v1.")] != "/runtime.v1.":
		return status.Errorf(codes.Unimplemented, "unknown service for method %s", method)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	cs, err := backend.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		return err
	}
	// Requests: CRI's calls are unary or server-streaming, one message in.
	go func() {
		for {
			var m rawMessage
			if err := ss.RecvMsg(&m); err != nil {
				_ = cs.CloseSend()
				return
			}
			if err := cs.SendMsg(&m); err != nil {
				return
			}
		}
	}()
	for {
		var m rawMessage
		if err := cs.RecvMsg(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if method == criVersion {
			if m, err = asCRIO(m); err != nil {
				return err
			}
		}
		if err := ss.SendMsg(&m); err != nil {
			return err
		}
	}
}

// asCRIO rewrites a Version answer to name the runtime cri-o.
func asCRIO(m rawMessage) (rawMessage, error) {
	var v runtimeapi.VersionResponse
	if err := proto.Unmarshal(m, &v); err != nil {
		return nil, status.Errorf(codes.Internal, "decode version answer: %v", err)
	}
	v.RuntimeName = "cri-o"
	b, err := proto.Marshal(&v)
	return b, err
}

// rawMessage is a gRPC message passed on as its wire bytes.
type rawMessage []byte

// rawCodec hands messages through undecoded; it names itself "proto" so the
// content type is what both ends expect.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMessage)
	if !ok {
		return nil, status.Errorf(codes.Internal, "raw codec: cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*m)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMessage)
	if !ok {
		return status.Errorf(codes.Internal, "raw codec: cannot unmarshal into %T", v)
	}
	*m = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }
