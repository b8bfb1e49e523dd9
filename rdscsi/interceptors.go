package rdscsi

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/srvlab/rds-csi/metrics"
)

// Interceptors are plain grpc.UnaryServerInterceptor values for the
// caller to chain, outermost first:
//
//	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(
//		rdscsi.LoggingInterceptor(logger),
//		rdscsi.MetricsInterceptor(recorder),
//		serialize,
//	))
//
// so that Aborted answers of the serializer are logged and counted too.

// StrippedSecret replaces the value of every CSI secret in logged
// messages.
const StrippedSecret = "***stripped***"

// LoggingInterceptor logs every RPC through l: at Debug level the
// request and the response, and failures at Info (caller errors) or Warn
// (server-side trouble: Internal, Unavailable, DeadlineExceeded, Unknown)
// with the request. Messages are logged only after every field the CSI
// spec marks csi_secret has been replaced by StrippedSecret.
func LoggingInterceptor(l *slog.Logger) grpc.UnaryServerInterceptor {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		method := methodName(info.FullMethod)
		if l.Enabled(ctx, slog.LevelDebug) {
			l.LogAttrs(ctx, slog.LevelDebug, "csi request", slog.String("method", method), slog.String("request", sanitizedJSON(req)))
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		d := time.Since(start)
		code := Code(err)
		if err == nil {
			if l.Enabled(ctx, slog.LevelDebug) {
				l.LogAttrs(ctx, slog.LevelDebug, "csi response", slog.String("method", method),
					slog.Duration("duration", d), slog.String("response", sanitizedJSON(resp)))
			}
			return resp, nil
		}
		level := slog.LevelInfo
		switch code {
		case codes.Internal, codes.Unknown, codes.Unavailable, codes.DeadlineExceeded, codes.DataLoss:
			level = slog.LevelWarn
		}
		if l.Enabled(ctx, level) {
			l.LogAttrs(ctx, level, "csi call failed", slog.String("method", method),
				slog.String("code", code.String()), slog.Duration("duration", d),
				slog.String("error", err.Error()), slog.String("request", sanitizedJSON(req)))
		}
		return resp, err
	}
}

// MetricsInterceptor reports every RPC to r: short method name, gRPC code
// name and duration.
func MetricsInterceptor(r metrics.Recorder) grpc.UnaryServerInterceptor {
	if r == nil {
		r = metrics.Noop{}
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		r.RPC(ctx, methodName(info.FullMethod), Code(err).String(), time.Since(start))
		return resp, err
	}
}

// methodName turns "/csi.v1.Controller/CreateVolume" into "CreateVolume".
func methodName(full string) string {
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[i+1:]
	}
	return full
}

// sanitizedJSON renders a protobuf message as JSON with every csi_secret
// field replaced by StrippedSecret (map values one by one, so the keys
// stay visible). Non-protobuf values render as "".
func sanitizedJSON(v any) string {
	m, ok := v.(proto.Message)
	if !ok || m == nil {
		return ""
	}
	if hasSecrets(m.ProtoReflect()) {
		m = proto.Clone(m)
		stripSecrets(m.ProtoReflect())
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return ""
	}
	return string(b)
}

var secretFields sync.Map // protoreflect.FullName -> bool

// isSecret reports whether a field carries the csi_secret option.
func isSecret(fd protoreflect.FieldDescriptor) bool {
	if v, ok := secretFields.Load(fd.FullName()); ok {
		return v.(bool)
	}
	secret := false
	if opts := fd.Options(); opts != nil {
		secret, _ = proto.GetExtension(opts, csi.E_CsiSecret).(bool)
	}
	secretFields.Store(fd.FullName(), secret)
	return secret
}

// hasSecrets reports whether any populated field of m, at any depth, is a
// secret, so that messages without secrets are not copied.
func hasSecrets(m protoreflect.Message) bool {
	found := false
	walk(m, func(protoreflect.Message, protoreflect.FieldDescriptor) { found = true })
	return found
}

// stripSecrets overwrites every populated secret field of m in place.
// Fields are collected first: a message must not change while it is
// being ranged over.
func stripSecrets(m protoreflect.Message) {
	type field struct {
		m  protoreflect.Message
		fd protoreflect.FieldDescriptor
	}
	var fields []field
	walk(m, func(m protoreflect.Message, fd protoreflect.FieldDescriptor) { fields = append(fields, field{m, fd}) })
	for _, f := range fields {
		m, fd := f.m, f.fd
		switch {
		case fd.IsMap() && fd.MapValue().Kind() == protoreflect.StringKind:
			old := m.Get(fd).Map()
			stripped := m.NewField(fd).Map()
			old.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				stripped.Set(k, protoreflect.ValueOfString(StrippedSecret))
				return true
			})
			m.Set(fd, protoreflect.ValueOfMap(stripped))
		case !fd.IsList() && !fd.IsMap() && fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(StrippedSecret))
		default:
			m.Clear(fd)
		}
	}
}

// walk calls secret for every populated secret field and descends into
// every other message-valued field.
func walk(m protoreflect.Message, secret func(protoreflect.Message, protoreflect.FieldDescriptor)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if isSecret(fd) {
			secret(m, fd)
			return true
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					walk(mv.Message(), secret)
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					walk(l.Get(i).Message(), secret)
				}
			}
		case fd.Message() != nil:
			walk(v.Message(), secret)
		}
		return true
	})
}
