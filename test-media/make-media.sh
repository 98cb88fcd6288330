#!/usr/bin/env bash
# Generate mediaedge's small synthetic test media with ffmpeg (lavfi sources only).
#
# Usage: bash test-media/make-media.sh [OUTPUT_DIR]
#   OUTPUT_DIR defaults to the directory holding this script.
#
# Produces (about 20 s, 2 s segments, keyframe every 2 s):
#   hls-ts/          HLS, MPEG-TS segments, master.m3u8 -> v0/index.m3u8, v1/index.m3u8
#   hls-fmp4/        HLS, fMP4/CMAF segments (init.mp4 + .m4s), same layout
#   dash/            DASH static manifest.mpd, SegmentTemplate, init + .m4s segments
#   progressive.mp4  the higher rendition + audio, faststart
#
# Everything is encoded once into a temporary mezzanine file and then only
# re-packaged (-c copy), so all formats carry the very same frames.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

command -v ffmpeg >/dev/null || { echo "ffmpeg not found (apt-get install -y ffmpeg)" >&2; exit 1; }

# ---- parameters -----------------------------------------------------------
DUR=20          # seconds of content
SEG=2           # segment duration, seconds
FPS=25
GOP=$((FPS * SEG))
# rendition 0 / rendition 1: WxH, target/max video bitrate, H.264 profile
R0_SIZE=320x180; R0_BR=90k;  R0_MAX=110k; R0_BUF=220k; R0_PROFILE=baseline
R1_SIZE=480x270; R1_BR=170k; R1_MAX=210k; R1_BUF=420k; R1_PROFILE=main
A_BR=48k; A_RATE=48000
# Audio: whole AAC frames (1024 samples) only, one frame short of DUR, so that
# encoder priming + padding still ends before DUR and no stray last segment appears.
A_SAMPLES=$(( (DUR * A_RATE / 1024 - 1) * 1024 ))

FF=(ffmpeg -hide_banner -nostdin -loglevel error -y)
BITEXACT=(-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1 -map_chapters -1)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ---- burnt-in label/timestamp, only if drawtext works without a font file --
draw() { :; }
if "${FF[@]}" -f lavfi -i "color=c=black:s=64x64:d=0.04" \
     -vf "drawtext=text='x':fontsize=10:fontcolor=white" -f null - >/dev/null 2>&1; then
  draw() { # $1 = label
    printf ",drawtext=text='%s  %%{pts\\:hms}  f%%{n}':x=8:y=8:fontsize=h/12:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=4" "$1"
  }
  echo "drawtext: available, burning in label and timestamp"
else
  echo "drawtext: not usable without a font file, skipping burnt-in timestamp"
fi

# ---- 1. encode the mezzanine: 2 video renditions + 1 audio -----------------
# MP4 so that stream bitrates survive -c copy (the HLS master needs BANDWIDTH).
mezz="$tmp/mezz.mp4"
fc="[0:v]split=2[s0][s1];"
fc+="[s0]scale=${R0_SIZE/x/:}:flags=bicubic$(draw "${R0_SIZE#*x}p")[v0];"
fc+="[s1]scale=${R1_SIZE/x/:}:flags=bicubic$(draw "${R1_SIZE#*x}p")[v1]"

"${FF[@]}" \
  -f lavfi -i "testsrc2=size=640x360:rate=${FPS}:duration=${DUR}" \
  -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=${A_RATE}:duration=${DUR}" \
  -filter_complex "$fc" \
  -map '[v0]' -map '[v1]' -map 1:a \
  -af "atrim=end_sample=${A_SAMPLES}" \
  -c:v libx264 -preset veryfast -threads 1 -pix_fmt yuv420p -r "$FPS" \
  -g "$GOP" -keyint_min "$GOP" -sc_threshold 0 \
  -force_key_frames "expr:gte(t,n_forced*${SEG})" \
  -x264-params "rc-lookahead=${GOP}" \
  -profile:v:0 "$R0_PROFILE" -b:v:0 "$R0_BR" -maxrate:v:0 "$R0_MAX" -bufsize:v:0 "$R0_BUF" \
  -profile:v:1 "$R1_PROFILE" -b:v:1 "$R1_BR" -maxrate:v:1 "$R1_MAX" -bufsize:v:1 "$R1_BUF" \
  -c:a aac -b:a "$A_BR" -ac 1 -ar "$A_RATE" \
  -t "$DUR" "${BITEXACT[@]}" "$mezz"

# Remove previous outputs (only the generated ones).
rm -rf "$out/hls-ts" "$out/hls-fmp4" "$out/dash" "$out/progressive.mp4"

# Both HLS variants carry video + the (shared) audio track, muxed.
HLS_MAP=(-map 0:v:0 -map 0:a:0 -map 0:v:1 -map 0:a:0)
# h264_mp4toannexb gives the hls muxer Annex B extradata, from which it can
# derive the CODECS attribute of the master playlist.
HLS_COMMON=(-c copy -bsf:v h264_mp4toannexb -f hls -hls_time "$SEG" -hls_playlist_type vod
            -hls_flags independent_segments
            -var_stream_map "v:0,a:0,name:v0 v:1,a:1,name:v1"
            -master_pl_name master.m3u8)

# ---- 2. HLS with MPEG-TS segments -------------------------------------------
mkdir -p "$out/hls-ts"
(cd "$out/hls-ts" && "${FF[@]}" -i "$mezz" "${HLS_MAP[@]}" "${HLS_COMMON[@]}" "${BITEXACT[@]}" \
  -hls_segment_type mpegts -hls_segment_filename '%v/seg_%05d.ts' '%v/index.m3u8')

# ---- 3. HLS with fMP4 (CMAF) segments ---------------------------------------
mkdir -p "$out/hls-fmp4"
(cd "$out/hls-fmp4" && "${FF[@]}" -i "$mezz" "${HLS_MAP[@]}" "${HLS_COMMON[@]}" "${BITEXACT[@]}" \
  -hls_segment_type fmp4 -hls_fmp4_init_filename 'init_%v.mp4' \
  -hls_segment_filename '%v/seg_%05d.m4s' '%v/index.m3u8')
# ffmpeg insists on a per-variant init name; give each its plain init.mp4.
for v in v0 v1; do
  mv "$out/hls-fmp4/$v/init_$v.mp4" "$out/hls-fmp4/$v/init.mp4"
  sed -i "s/init_$v\.mp4/init.mp4/" "$out/hls-fmp4/$v/index.m3u8"
done

# ---- 4. DASH, static MPD, SegmentTemplate without timeline ------------------
mkdir -p "$out/dash"
(cd "$out/dash" && "${FF[@]}" -i "$mezz" -map 0:v:0 -map 0:v:1 -map 0:a:0 -c copy "${BITEXACT[@]}" \
  -f dash -seg_duration "$SEG" -use_template 1 -use_timeline 0 \
  -adaptation_sets "id=0,streams=v id=1,streams=a" \
  -init_seg_name 'init-$RepresentationID$.$ext$' \
  -media_seg_name 'chunk-$RepresentationID$-$Number%05d$.$ext$' \
  manifest.mpd)

# ---- 5. progressive MP4 (higher rendition + audio) --------------------------
"${FF[@]}" -i "$mezz" -map 0:v:1 -map 0:a:0 -c copy "${BITEXACT[@]}" \
  -movflags +faststart "$out/progressive.mp4"

# ---- report -------------------------------------------------------------------
echo "made in $out:"
(cd "$out" && find hls-ts hls-fmp4 dash progressive.mp4 -type f | LC_ALL=C sort | while read -r f; do
  printf '  %8d  %s\n' "$(stat -c %s "$f")" "$f"
done)
(cd "$out" && du -ch hls-ts hls-fmp4 dash progressive.mp4 | tail -1)
