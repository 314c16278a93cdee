"""The Gradio Blocks layout: components wired to :class:`demo.handlers.DemoService` handlers, nothing more.

Named endpoints (``/search``, ``/classify``, ``/generate``) are the same functions the page uses, so
``gradio_client`` and MCP clients see exactly what a person sees. Every other event is private.

Every static text is a ``gr.I18n`` key (:mod:`demo.page` builds the tables; the browser's language picks
one). The layout puts what a visitor does first: on a phone the columns stack, so the title and a one-line
status are followed by the recorder and the example sounds; the long description sits in "About" below.
"""
from __future__ import annotations

import functools

import gradio as gr
import pandas as pd
from gradio.i18n import I18nData as t

from . import page
from .handlers import DemoService
from .messages import SECURE_CONTEXT_JS, language, text

# Small generator outputs (the shapes bundle's are 32 px) are scaled up crisply instead of shown as a thumbnail.
CSS = """
#generated img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#examples button { justify-content: flex-start; text-align: left; }
#privacy, #map-help { font-size: 0.85em; opacity: 0.85; }
"""
#: (every, older than) seconds: how often Gradio deletes the files it wrote for visitors (pictures sent, examples'
#: copies) and how old they must be. Uploads and recordings do not wait for this: they are deleted once handled.
DELETE_CACHE = (60, 600)


def build_ui(service: DemoService, *, delete_cache: tuple[int, int] | None = DELETE_CACHE) -> gr.Blocks:
    """The whole page; ``launch(i18n=page.translations(service))`` supplies its texts (``app.py`` does)."""
    with gr.Blocks(title="WavBriVL", fill_width=True, delete_cache=delete_cache) as demo:
        gr.Markdown(t("title"), elem_id="title")
        status = gr.Markdown(page.status(service), elem_id="model-info")
        loading = gr.Timer(1.0, active=not service.state.done.is_set())

        with gr.Row(equal_height=False):
            with gr.Column(scale=1, min_width=320):
                # No download button: the recording is deleted from the server once it has been analysed.
                audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label=t("audio_label"),
                                 elem_id="audio-in", buttons=[])
                gr.Markdown(t("privacy"), elem_id="privacy")
                mic_notice = gr.Markdown(elem_id="mic-notice")
                example_buttons = []
                if page.example_files(service):
                    with gr.Column(elem_id="examples", variant="panel"):
                        gr.Markdown(t("examples_title"))
                        example_buttons = [gr.Button(t(f"example_{i}"), size="sm", elem_classes=["example"])
                                           for i in range(len(page.example_files(service)))]
                gr.Markdown(t("intro"), elem_id="intro")
                k = gr.Slider(1, 24, value=service.config.top_k, step=1, label=t("k_label"))
                with gr.Accordion(t("mic_help_title"), open=False, elem_id="mic-help"):
                    gr.Markdown(t("mic_help"))
            with gr.Column(scale=2, min_width=420):
                gallery = gr.Gallery(label=t("gallery_label"), columns=4, height=360, object_fit="contain", elem_id="gallery")
                search_note = gr.Markdown(elem_id="search-note")
                with gr.Row():
                    captions = gr.Dataframe(headers=["score", "caption"], datatype=["number", "str"], label=t("captions_label"),
                                            interactive=False, wrap=True, max_height=320, elem_id="captions")
                    with gr.Column():
                        verdict = gr.Markdown(elem_id="label-verdict")
                        label_out = gr.Label(num_top_classes=6, label=t("labels_out_label"), elem_id="labels-out")
                sound_map = gr.Plot(label=t("map_label"), elem_id="sound-map", format="png")
                gr.Markdown(t("map_help"), elem_id="map-help")
                with gr.Accordion(t("labels_title"), open=False):
                    labels = gr.Textbox(value="\n".join(service.labels), lines=8, show_label=False,
                                        placeholder=t("labels_placeholder"), elem_id="labels-in")
                    classify_btn = gr.Button(t("classify"))

        with gr.Accordion(t("generate_title"), open=True):
            with gr.Row():
                with gr.Column(scale=1, min_width=320):
                    prompt = gr.Textbox(label=t("prompt_label"), placeholder=t("prompt_placeholder"))
                    mix = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label=t("mix_label"))
                    with gr.Row():
                        seed = gr.Number(value=0, precision=0, label=t("seed"), minimum=0)
                        steps = gr.Slider(1, 100, value=25, step=1, label=t("steps"))
                    with gr.Row():
                        noise = gr.Slider(0, 999, value=0, step=1, label=t("noise"))
                        guidance = gr.Slider(0.0, 20.0, value=0.0, step=0.5, label=t("guidance"))
                    gen_btn = gr.Button(t("generate_button"), variant="primary", elem_id="generate")
                with gr.Column(scale=1):
                    gen_out = gr.Image(label=t("generated_label"), type="pil", height=360, elem_id="generated")
                    if service.card.generator.retrieval:
                        gr.Markdown(t("generated_retrieval"), elem_id="generated-retrieval")

        with gr.Accordion(t("about_title"), open=False, elem_id="about"):
            gr.Markdown(t("about"))
            space = gr.Markdown(page.space_line(service), elem_id="space-info")

        # --- events ---------------------------------------------------------------------------------
        # A finished recording, an upload, an example click and clearing all change the value: one event.
        searched = audio.change(service.search, [audio, k], [gallery, captions, search_note], api_name="search",
                                trigger_mode="always_last", show_progress="minimal")
        # Below the card's threshold the chart loses its bold winner and the model says it is unsure (service.verdict).
        searched.success(service.classify, [audio, labels], [label_out], api_name="classify_after_search",
                         api_visibility="private", show_progress="hidden").success(
            service.verdict, [label_out], [label_out, verdict], api_name="verdict_after_search", api_visibility="private",
            show_progress="hidden")
        searched.success(service.sound_map, [audio, k], [sound_map], api_name="map", api_visibility="private",
                         show_progress="hidden")
        k.release(service.search, [audio, k], [gallery, captions, search_note], api_name="search_again",
                  api_visibility="private", trigger_mode="always_last").success(
            service.sound_map, [audio, k], [sound_map], api_name="map_again", api_visibility="private", show_progress="hidden")
        gr.on([classify_btn.click, labels.submit], service.classify, [audio, labels], [label_out], api_name="classify").success(
            service.verdict, [label_out], [label_out, verdict], api_name="verdict", api_visibility="private",
            show_progress="hidden")
        gen_btn.click(service.generate, [audio, prompt, mix, seed, steps, noise, guidance], [gen_out],
                      api_name="generate", concurrency_limit=1, concurrency_id="generate")
        for i, button in enumerate(example_buttons):
            button.click(functools.partial(service.pick_example, i), None, [audio], api_name=f"example_{i}",
                         api_visibility="private", show_progress="hidden")

        def refresh_info(request: gr.Request):
            lang = language(request)
            done = service.state.done.is_set()
            return page.status(service, lang), page.space_line(service, lang), gr.Timer(active=not done)

        def localized_headers(request: gr.Request):
            lang = language(request)
            return pd.DataFrame(columns=[text("score", lang), text("caption", lang)])

        for trigger in (loading.tick, demo.load):
            trigger(refresh_info, None, [status, space, loading], api_visibility="private", show_progress="hidden")
        demo.load(localized_headers, None, [captions], api_visibility="private", show_progress="hidden")
        demo.load(None, None, [mic_notice], js=SECURE_CONTEXT_JS, api_name="check_microphone", api_visibility="private")
    return demo
