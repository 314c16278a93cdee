"""The Gradio Blocks layout: components wired to :class:`demo.service.DemoService` handlers, nothing more.

Named endpoints (``/search``, ``/classify``, ``/generate``) are the same functions the page uses, so
``gradio_client`` sees exactly what a person sees. Every other event is private.
"""
from __future__ import annotations

import gradio as gr

from .handlers import DemoService, on_gpu
from .messages import MIC_HELP, SECURE_CONTEXT_JS, TITLE

# Small generator outputs (the starter's are 32 px) are scaled up crisply instead of shown as a thumbnail.
CSS = """
#generated img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
"""


def build_ui(service: DemoService) -> gr.Blocks:
    """The whole page. The examples and labels come from the bundle, so the service is loaded first
    (``app.py`` does it in the background while the server starts)."""
    max_s = service.config.max_seconds
    with gr.Blocks(title=TITLE, fill_width=True) as demo:
        gr.Markdown(f"# {TITLE}\nRecord or upload a sound (up to {max_s:.0f} s): the model finds the "
                    "pictures and captions it is closest to, scores your labels, and can paint what it hears.")
        info = gr.Markdown(service.describe(), elem_id="model-info")
        loading = gr.Timer(1.0, active=not service.state.done.is_set())

        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                audio = gr.Audio(
                    sources=["microphone", "upload"], type="filepath", label=f"Your sound (≤ {max_s:.0f} s)",
                    elem_id="audio-in", buttons=["download"],
                )
                mic_notice = gr.Markdown(elem_id="mic-notice")
                with gr.Accordion("Microphone not working? (permission, https)", open=False, elem_id="mic-help"):
                    gr.Markdown(MIC_HELP)
                examples = service.examples()
                if examples:
                    gr.Examples(examples=[[path] for path, _ in examples], inputs=[audio], label="Example sounds (click one)",
                                example_labels=[title for _, title in examples], cache_examples=False, examples_per_page=12)
                k = gr.Slider(1, 24, value=service.config.top_k, step=1, label="Results to show (k)")
            with gr.Column(scale=2, min_width=420):
                gallery = gr.Gallery(label="Nearest images (score · caption)", columns=4, height=360,
                                     object_fit="contain", elem_id="gallery")
                search_note = gr.Markdown(elem_id="search-note")
                with gr.Row():
                    captions = gr.Dataframe(headers=["score", "caption"], datatype=["number", "str"],
                                            label="Nearest captions", interactive=False, wrap=True, max_height=320)
                    label_out = gr.Label(num_top_classes=6, label="Zero-shot labels", elem_id="labels-out")
                with gr.Accordion("Labels for zero-shot classification (edit, then press Classify)", open=False):
                    labels = gr.Textbox(value="\n".join(service.labels), lines=8, show_label=False,
                                        placeholder="one label per line, or comma-separated", elem_id="labels-in")
                    classify_btn = gr.Button("Classify")

        with gr.Accordion("Generate an image from the sound", open=True):
            with gr.Row():
                with gr.Column(scale=1, min_width=320):
                    prompt = gr.Textbox(label="Optional text prompt", placeholder="e.g. a watercolour painting")
                    mix = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Mix: audio (0) ↔ text prompt (1)")
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label="Seed", minimum=0)
                        steps = gr.Slider(1, 100, value=25, step=1, label="Steps")
                    with gr.Row():
                        noise = gr.Slider(0, 999, value=0, step=1, label="Noise level (unCLIP: more = looser)")
                        guidance = gr.Slider(0.0, 20.0, value=0.0, step=0.5, label="Guidance (0 = generator default)")
                    gen_btn = gr.Button("Generate image", variant="primary", elem_id="generate")
                gen_out = gr.Image(label="Generated", type="pil", height=360, elem_id="generated")

        # --- events ---------------------------------------------------------------------------------
        # A finished recording, an upload, an example click and clearing all change the value: one event.
        searched = audio.change(service.search, [audio, k], [gallery, captions, search_note], api_name="search",
                                trigger_mode="always_last", show_progress="minimal")
        searched.success(service.classify, [audio, labels], [label_out], api_name="classify_after_search",
                         api_visibility="private",
                         show_progress="hidden")
        k.release(service.search, [audio, k], [gallery, captions, search_note], api_name="search_again",
                  api_visibility="private",
                  trigger_mode="always_last")
        gr.on([classify_btn.click, labels.submit], service.classify, [audio, labels], [label_out],
              api_name="classify")
        gen_btn.click(on_gpu(service.generate), [audio, prompt, mix, seed, steps, noise, guidance], [gen_out],
                      api_name="generate", concurrency_limit=1, concurrency_id="generate")

        def refresh_info():
            done = service.state.done.is_set()
            return service.describe(), gr.Timer(active=not done)

        for trigger in (loading.tick, demo.load):
            trigger(refresh_info, None, [info, loading], api_visibility="private", show_progress="hidden")
        demo.load(None, None, [mic_notice], js=SECURE_CONTEXT_JS, api_name="check_microphone", api_visibility="private")
    return demo
