// Native helpers the codec cannot get from Node: lseek(SEEK_DATA/SEEK_HOLE) to find file holes without
// reading them, XXH64 (the zstd seekable format's per-frame checksum), and zstd frames compressed from and
// decoded into caller-owned buffers on the libuv pool, with one reused context per pool thread.
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <zstd.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <napi.h>

namespace {

// Returns the offset lseek finds, or -1 when there is none past `offset` (ENXIO).
Napi::Value Seek(const Napi::CallbackInfo& info, int whence) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    Napi::TypeError::New(env, "expected (fd, offset)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  off_t offset = static_cast<off_t>(info[1].As<Napi::Number>().Int64Value());
  off_t found = lseek(fd, offset, whence);
  if (found < 0) {
    if (errno == ENXIO) return Napi::Number::New(env, -1);
    Napi::Error error = Napi::Error::New(env, strerror(errno));
    error.Set("errno", Napi::Number::New(env, errno));
    error.ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(found));
}

Napi::Value SeekData(const Napi::CallbackInfo& info) { return Seek(info, SEEK_DATA); }
Napi::Value SeekHole(const Napi::CallbackInfo& info) { return Seek(info, SEEK_HOLE); }

// Low 32 bits of XXH64(data, seed 0), as the seekable format stores it.
Napi::Value Xxh64Low32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(env, "expected a Uint8Array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
  XXH64_hash_t hash = XXH64(data.Data(), data.ByteLength(), 0);
  return Napi::Number::New(env, static_cast<double>(static_cast<uint32_t>(hash)));
}

// Runs one zstd call on the libuv pool. The input and output stay referenced (and unmoved) until it ends.
class ZstdWorker : public Napi::AsyncWorker {
 public:
  ZstdWorker(Napi::Function callback, Napi::Uint8Array input, Napi::Uint8Array output, int level)
      : Napi::AsyncWorker(callback, "snapfleet-zstd"),
        input_ref_(Napi::Persistent(input)),
        output_ref_(Napi::Persistent(output)),
        input_(input.Data()),
        input_size_(input.ByteLength()),
        output_(output.Data()),
        output_capacity_(output.ByteLength()),
        level_(level) {}

 protected:
  void Execute() override {
    thread_local ZSTD_CCtx* compressor = ZSTD_createCCtx();
    thread_local ZSTD_DCtx* decompressor = ZSTD_createDCtx();
    size_t result = level_ > 0
        ? ZSTD_compressCCtx(compressor, output_, output_capacity_, input_, input_size_, level_)
        : ZSTD_decompressDCtx(decompressor, output_, output_capacity_, input_, input_size_);
    if (ZSTD_isError(result)) SetError(ZSTD_getErrorName(result));
    else written_ = result;
  }

  void OnOK() override { Callback().Call({Env().Null(), Napi::Number::New(Env(), static_cast<double>(written_))}); }

 private:
  Napi::Reference<Napi::Uint8Array> input_ref_;
  Napi::Reference<Napi::Uint8Array> output_ref_;
  const uint8_t* input_;
  size_t input_size_;
  uint8_t* output_;
  size_t output_capacity_;
  int level_;
  size_t written_ = 0;
};

// zstdCompress(input, level, output, callback(error, frameLength)): level 1..22.
// zstdDecompress(frame, output, callback(error, length)): output must hold the whole decoded frame.
Napi::Value ZstdRun(const Napi::CallbackInfo& info, bool compress) {
  Napi::Env env = info.Env();
  size_t callback_at = compress ? 3 : 2;
  bool valid = info.Length() > callback_at && info[0].IsTypedArray() && info[callback_at - 1].IsTypedArray() &&
               info[callback_at].IsFunction() && (!compress || info[1].IsNumber());
  if (!valid) {
    Napi::TypeError::New(env, "expected (input, [level,] output, callback)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int level = compress ? info[1].As<Napi::Number>().Int32Value() : 0;
  if (compress && level < 1) {
    Napi::RangeError::New(env, "zstd level must be 1 or more").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new ZstdWorker(info[callback_at].As<Napi::Function>(), info[0].As<Napi::Uint8Array>(),
                                info[callback_at - 1].As<Napi::Uint8Array>(), level);
  worker->Queue();
  return env.Undefined();
}

Napi::Value ZstdCompress(const Napi::CallbackInfo& info) { return ZstdRun(info, true); }
Napi::Value ZstdDecompress(const Napi::CallbackInfo& info) { return ZstdRun(info, false); }

Napi::Value ZstdCompressBound(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(),
                           static_cast<double>(ZSTD_compressBound(info[0].As<Napi::Number>().Int64Value())));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("seekData", Napi::Function::New(env, SeekData));
  exports.Set("seekHole", Napi::Function::New(env, SeekHole));
  exports.Set("xxh64Low32", Napi::Function::New(env, Xxh64Low32));
  exports.Set("zstdCompress", Napi::Function::New(env, ZstdCompress));
  exports.Set("zstdDecompress", Napi::Function::New(env, ZstdDecompress));
  exports.Set("zstdCompressBound", Napi::Function::New(env, ZstdCompressBound));
  return exports;
}

}  // namespace

NODE_API_MODULE(snapfleet_codec, Init)
