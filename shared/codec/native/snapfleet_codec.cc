// Native helpers the codec and the driver cannot get from Node: lseek(SEEK_DATA/SEEK_HOLE) to find file holes
// without reading them, fallocate to punch holes, XXH64 (the zstd seekable format's per-frame checksum), and zstd
// and LZ4 frames compressed from and decoded into caller-owned buffers on the libuv pool, with contexts reused per
// pool thread.
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <lz4.h>
#include <lz4frame.h>
#include <lz4hc.h>
#include <zstd.h>

#include <errno.h>
#include <fcntl.h>
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

// fallocate(PUNCH_HOLE | KEEP_SIZE): gives a range's blocks back, the file reading zeros there; Node has no fallocate.
Napi::Value PunchHole(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber()) {
    Napi::TypeError::New(env, "expected (fd, offset, length)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  off_t offset = static_cast<off_t>(info[1].As<Napi::Number>().Int64Value());
  off_t length = static_cast<off_t>(info[2].As<Napi::Number>().Int64Value());
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0) {
    Napi::Error error = Napi::Error::New(env, strerror(errno));
    error.Set("errno", Napi::Number::New(env, errno));
    error.ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

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

bool IsAllZero(const uint8_t* data, size_t size) {
  size_t index = 0;
  for (; index + sizeof(uint64_t) <= size; index += sizeof(uint64_t)) {
    uint64_t word;
    memcpy(&word, data + index, sizeof(word));
    if (word != 0) return false;
  }
  for (; index < size; index++) {
    if (data[index] != 0) return false;
  }
  return true;
}

// Full XXH64(data, seed 0) as a BigInt: the per-block checksum of squashfs images (shared/squashfs).
Napi::Value Xxh64(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(env, "expected a Uint8Array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Uint8Array data = info[0].As<Napi::Uint8Array>();
  return Napi::BigInt::New(env, static_cast<uint64_t>(XXH64(data.Data(), data.ByteLength(), 0)));
}

enum class Operation { kZstdCompress, kZstdDecompress, kLz4Compress, kLz4Decompress, kLz4BlockCompress };

// A raw LZ4 block (no frame), as squashfs stores them: level 0-2 LZ4's fast mode, 3 and up LZ4HC at that level.
// Returns 0 when the block does not fit in `capacity`.
size_t Lz4BlockCompress(uint8_t* output, size_t capacity, const uint8_t* input, size_t size, int level) {
  const char* source = reinterpret_cast<const char*>(input);
  char* destination = reinterpret_cast<char*>(output);
  if (level < 3) return LZ4_compress_default(source, destination, static_cast<int>(size), static_cast<int>(capacity));
  return LZ4_compress_HC(source, destination, static_cast<int>(size), static_cast<int>(capacity), level);
}

// Levels up to this reuse one compression context per pool thread; above it a context is large (tens of MiB at
// level 19) and is freed after each chunk, so idle pool threads do not keep it.
constexpr int kMaxReusedZstdLevel = 3;

size_t ZstdCompress(uint8_t* output, size_t capacity, const uint8_t* input, size_t size, int level) {
  if (level > kMaxReusedZstdLevel) {
    ZSTD_CCtx* context = ZSTD_createCCtx();
    size_t result = ZSTD_compressCCtx(context, output, capacity, input, size, level);
    ZSTD_freeCCtx(context);
    return result;
  }
  thread_local ZSTD_CCtx* context = ZSTD_createCCtx();
  return ZSTD_compressCCtx(context, output, capacity, input, size, level);
}

LZ4F_preferences_t Lz4Preferences(int level) {
  LZ4F_preferences_t preferences = LZ4F_INIT_PREFERENCES;
  // 1 MiB blocks, not the command's 4 MiB: a block no larger than the chunk decodes straight into the output
  // instead of through liblz4's own buffer, and LZ4's 64 KiB window makes the block size cost next to no ratio.
  preferences.frameInfo.blockSizeID = LZ4F_max1MB;
  preferences.frameInfo.blockMode = LZ4F_blockIndependent;
  preferences.frameInfo.contentChecksumFlag = LZ4F_noContentChecksum;  // the seek table has XXH64 per chunk
  preferences.compressionLevel = level;
  return preferences;
}

// Decodes exactly one frame that must fill the output; anything else is an error.
const char* Lz4Decompress(uint8_t* output, size_t capacity, const uint8_t* input, size_t size, size_t* written) {
  thread_local LZ4F_dctx* context = nullptr;
  if (context == nullptr && LZ4F_isError(LZ4F_createDecompressionContext(&context, LZ4F_VERSION))) {
    return "cannot create an lz4 decompression context";
  }
  LZ4F_resetDecompressionContext(context);
  size_t consumed = 0;
  size_t produced = 0;
  for (;;) {
    size_t output_size = capacity - produced;
    size_t input_size = size - consumed;
    size_t hint = LZ4F_decompress(context, output + produced, &output_size, input + consumed, &input_size, nullptr);
    if (LZ4F_isError(hint)) return LZ4F_getErrorName(hint);
    consumed += input_size;
    produced += output_size;
    if (hint == 0) break;
    if (input_size == 0 && output_size == 0) return "lz4 frame is truncated or larger than expected";
  }
  if (consumed != size) return "bytes follow the lz4 frame";
  *written = produced;
  return nullptr;
}

// Runs one compression call on the libuv pool. Input and output stay referenced (and unmoved) until it ends.
class CodecWorker : public Napi::AsyncWorker {
 public:
  CodecWorker(Napi::Function callback, Operation operation, Napi::Uint8Array input, Napi::Uint8Array output,
              int level, bool detect_zero)
      : Napi::AsyncWorker(callback, "snapfleet-codec"),
        operation_(operation),
        input_ref_(Napi::Persistent(input)),
        output_ref_(Napi::Persistent(output)),
        input_(input.Data()),
        input_size_(input.ByteLength()),
        output_(output.Data()),
        output_capacity_(output.ByteLength()),
        level_(level),
        detect_zero_(detect_zero) {}

 protected:
  void Execute() override {
    const bool compressing = operation_ == Operation::kZstdCompress || operation_ == Operation::kLz4Compress ||
                             operation_ == Operation::kLz4BlockCompress;
    if (compressing) {
      checksum_ = static_cast<uint32_t>(XXH64(input_, input_size_, 0));
      if (detect_zero_ && IsAllZero(input_, input_size_)) {
        zero_ = true;
        return;
      }
    }
    const char* error = nullptr;
    switch (operation_) {
      case Operation::kZstdCompress:
      case Operation::kZstdDecompress: {
        thread_local ZSTD_DCtx* decompressor = ZSTD_createDCtx();
        size_t result = operation_ == Operation::kZstdCompress
                            ? ZstdCompress(output_, output_capacity_, input_, input_size_, level_)
                            : ZSTD_decompressDCtx(decompressor, output_, output_capacity_, input_, input_size_);
        if (ZSTD_isError(result)) error = ZSTD_getErrorName(result);
        else written_ = result;
        break;
      }
      case Operation::kLz4Compress: {
        LZ4F_preferences_t preferences = Lz4Preferences(level_);
        size_t result = LZ4F_compressFrame(output_, output_capacity_, input_, input_size_, &preferences);
        if (LZ4F_isError(result)) error = LZ4F_getErrorName(result);
        else written_ = result;
        break;
      }
      case Operation::kLz4Decompress:
        error = Lz4Decompress(output_, output_capacity_, input_, input_size_, &written_);
        break;
      case Operation::kLz4BlockCompress:
        written_ = Lz4BlockCompress(output_, output_capacity_, input_, input_size_, level_);
        if (written_ == 0) error = "lz4 block does not fit in the output buffer";
        break;
    }
    if (error != nullptr) SetError(error);
    else if (!compressing) checksum_ = static_cast<uint32_t>(XXH64(output_, written_, 0));
  }

  // callback(null, bytesWritten, checksum of the uncompressed bytes, whether the input was all zero)
  void OnOK() override {
    Napi::Env env = Env();
    Callback().Call({env.Null(), Napi::Number::New(env, static_cast<double>(written_)),
                     Napi::Number::New(env, static_cast<double>(checksum_)), Napi::Boolean::New(env, zero_)});
  }

 private:
  Operation operation_;
  Napi::Reference<Napi::Uint8Array> input_ref_;
  Napi::Reference<Napi::Uint8Array> output_ref_;
  const uint8_t* input_;
  size_t input_size_;
  uint8_t* output_;
  size_t output_capacity_;
  int level_;
  bool detect_zero_;
  size_t written_ = 0;
  uint32_t checksum_ = 0;
  bool zero_ = false;
};

// (input, output, level, detectZero, callback): level and detectZero are ignored when decompressing.
// Compressing also checksums the input and, with detectZero, skips an all-zero one; decompressing checksums
// the output. All of it off the main thread.
Napi::Value Run(const Napi::CallbackInfo& info, Operation operation) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsNumber() ||
      !info[3].IsBoolean() || !info[4].IsFunction()) {
    Napi::TypeError::New(env, "expected (input, output, level, detectZero, callback)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto* worker = new CodecWorker(info[4].As<Napi::Function>(), operation, info[0].As<Napi::Uint8Array>(),
                                 info[1].As<Napi::Uint8Array>(), info[2].As<Napi::Number>().Int32Value(),
                                 info[3].As<Napi::Boolean>().Value());
  worker->Queue();
  return env.Undefined();
}

Napi::Value ZstdCompressChunk(const Napi::CallbackInfo& info) { return Run(info, Operation::kZstdCompress); }
Napi::Value ZstdDecompressChunk(const Napi::CallbackInfo& info) { return Run(info, Operation::kZstdDecompress); }
Napi::Value Lz4CompressChunk(const Napi::CallbackInfo& info) { return Run(info, Operation::kLz4Compress); }
Napi::Value Lz4DecompressChunk(const Napi::CallbackInfo& info) { return Run(info, Operation::kLz4Decompress); }
Napi::Value Lz4BlockCompressChunk(const Napi::CallbackInfo& info) { return Run(info, Operation::kLz4BlockCompress); }

Napi::Value Lz4BlockCompressBound(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), LZ4_compressBound(info[0].As<Napi::Number>().Int32Value()));
}

Napi::Value ZstdCompressBound(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(),
                           static_cast<double>(ZSTD_compressBound(info[0].As<Napi::Number>().Int64Value())));
}

Napi::Value Lz4CompressBound(const Napi::CallbackInfo& info) {
  LZ4F_preferences_t preferences = Lz4Preferences(0);
  return Napi::Number::New(
      info.Env(),
      static_cast<double>(LZ4F_compressFrameBound(info[0].As<Napi::Number>().Int64Value(), &preferences)));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("seekData", Napi::Function::New(env, SeekData));
  exports.Set("seekHole", Napi::Function::New(env, SeekHole));
  exports.Set("punchHole", Napi::Function::New(env, PunchHole));
  exports.Set("xxh64Low32", Napi::Function::New(env, Xxh64Low32));
  exports.Set("zstdCompress", Napi::Function::New(env, ZstdCompressChunk));
  exports.Set("zstdDecompress", Napi::Function::New(env, ZstdDecompressChunk));
  exports.Set("zstdCompressBound", Napi::Function::New(env, ZstdCompressBound));
  exports.Set("lz4Compress", Napi::Function::New(env, Lz4CompressChunk));
  exports.Set("lz4Decompress", Napi::Function::New(env, Lz4DecompressChunk));
  exports.Set("lz4CompressBound", Napi::Function::New(env, Lz4CompressBound));
  exports.Set("xxh64", Napi::Function::New(env, Xxh64));
  exports.Set("lz4BlockCompress", Napi::Function::New(env, Lz4BlockCompressChunk));
  exports.Set("lz4BlockCompressBound", Napi::Function::New(env, Lz4BlockCompressBound));
  return exports;
}

}  // namespace

NODE_API_MODULE(snapfleet_codec, Init)
