"""Japanese texts of the demo, with the same keys as the English ones in :mod:`demo.messages`.

Data only. Polite and short, as a stakeholder reads them; terms of the field stay recognisable
(埋め込み for embedding, ゼロショット for zero-shot). Captions and labels are the model's own vocabulary (the
text tower reads English) and are shown as they are.
"""
from __future__ import annotations

JA: dict[str, str] = {
    "title": "# WavBriVL：モデルには何が聞こえる？\n**{bundle_name}**",
    "intro": "音を録音するかアップロードしてください（{max_s}秒まで）。例の音をクリックしても試せます。モデルがいちばん近い"
             "画像とキャプションを探し、ラベルごとのスコアを出し、聞こえたものを絵にすることもできます。",
    "privacy": "🔒 録音は保存しません。音は解析が終わるとすぐにサーバーから削除されます。",
    "audio_label": "あなたの音（{max_s}秒まで）",
    "mic_help_title": "マイクが使えないときは（許可・https）",
    "mic_help": """\
**マイクが使えないときは**
* ブラウザーがマイクを使わせるのは **https://** のページか **http://localhost / 127.0.0.1** だけです。別のマシンの
  アドレスで開いている場合は、`python app.py --share`（httpsのリンク）、Hugging Face Space、またはTLS付きの
  リバースプロキシ経由で開いてください。
* 「ブロック」を押してしまった場合は、アドレスバー左の鍵（またはカメラ）のアイコンから「マイク」を「許可」にして、
  ページを再読み込みしてください。macOSでは「システム設定 → プライバシーとセキュリティ → マイク」でもブラウザーを
  許可してください。
* 録音欄の下のリストで正しい入力デバイスを選んでください。マイクがない場合は、ファイルを **アップロード** してください
  （WAV、FLAC、OGG、MP3、M4A、WEBM。長さの上限は上に表示しています）。
""",
    "examples_title": "**例の音**：クリックすると試せます。✓ は同じ種類の音を学習で聞いたもの、✗ は一度も聞いていないもの"
                      "（モデルは画像を見ただけです）。",
    "example": "{mark} {title}",
    "example_note": "{mark} {title}：{note}",
    "k_label": "表示する件数（k）",
    "gallery_label": "近い画像（スコア・キャプション）",
    "captions_label": "近いキャプション",
    "labels_out_label": "ゼロショット分類",
    "labels_title": "ゼロショット分類のラベル（編集して「分類する」を押してください）",
    "labels_placeholder": "1行に1つ、またはカンマ区切り",
    "classify": "分類する",
    "map_label": "あなたの音の位置",
    "map_help": "★ あなたの音 ・ ◯ いちばん近い画像（キャプション付き） ・ 灰色の点：ギャラリーのほかの画像"
                "（似た画像どうしが近くに並びます）。",
    "generate_title": "音から絵を描く",
    "prompt_label": "テキストプロンプト（任意）",
    "prompt_placeholder": "例：水彩画",
    "mix_label": "混ぜ具合：音（0）↔ テキスト（1）",
    "seed": "シード",
    "steps": "ステップ数",
    "noise": "ノイズレベル（unCLIP：大きいほど自由に）",
    "guidance": "ガイダンス（0 = 生成モデルの既定値）",
    "generate_button": "絵を生成する",
    "generated_label": "生成した絵",
    "generated_retrieval": "絵の作り方: 生成モデルは、学習用のイラストのうちあなたの音に最も近いものを取り出し（検索）、"
                           "そこから音に合わせて描き直します。",
    "about_title": "このモデルについて",
    "about": "**{bundle_name}**\n\n{bundle_description}\n\n🔒 録音は保存しません。音は解析が終わるとすぐにサーバーから"
             "削除されます。ラベル、地図、絵の生成に続けて使えるよう、音の埋め込み（再生できない数値の列）だけをしばらく"
             "メモリーに置きます。",
    "default_description": "凍結したopen_clipの画像・テキスト空間に合わせて学習した音声エンコーダー（WavBriVL）です。"
                           "音と画像・言葉を1つのコサイン類似度で比べます。",
    "score": "スコア",
    "caption": "キャプション",
    "loading": "⏳ 読み込み中：{stage}…",
    "failed": "❌ モデルを読み込めませんでした：{error}",
    "ready": "✅ 準備ができました：{index}・{generator}。",
    "index_on": "画像{images}枚とキャプション{captions}件から検索します",
    "index_off": "⚠️ 検索は使えません：{reason}",
    "generator_on": "絵の生成が使えます",
    "generator_off": "⚠️ 絵の生成は使えません：{reason}",
    "real_on": "実モデルモード `{preset}`：絵は {generator} で描きます。",
    "real_off": "⚠️ {notice}",
    "card_problem": "⚠️ バンドルのカード（bundle.json）を読めなかったため、既定の表示を使っています：{reason}",
    "space": "埋め込み空間`{space}`（{dim}次元）。",
    "search_note": "{size}件のインデックスから画像{images}枚とキャプション{captions}件（{ms}ミリ秒）",
    "labels_capped": "最初の{n}個のラベルだけを使います。",
    "unsure": "🤔 **モデルは自信がありません**（いちばん可能性が高いものでも{prob}です）。次のどれかでしょうか？",
    "unsure_guess": "- {label}（{prob}）",
    "generating": "生成中",
    "stage_not started": "開始前",
    "stage_loading the audio model": "音声モデルを読み込んでいます",
    "stage_loading the gallery index": "ギャラリーのインデックスを読み込んでいます",
    "stage_loading the image generator": "絵の生成モデルを読み込んでいます",
    "stage_warming up": "準備運転をしています",
    "stage_ready": "準備完了",
}

#: key -> (title, message), as :data:`demo.messages.ERRORS`.
JA_ERRORS: dict[str, tuple[str, str]] = {
    "silent": ("この音は使えません", "音が無音です。正しいマイクが選ばれていて、ミュートになっていないことを確かめてから、"
               "もう一度録音してください。"),
    "empty": ("音がありません", "{name}に音が入っていません。録音した場合は、マイクがオンになっていることを確かめ、"
              "0.5秒以上録音してください。"),
    "undecodable": ("対応していないファイルです", "{name}はこのデモで読める音声ファイルではありません。"
                    "WAV、FLAC、OGG、MP3、M4A、WEBMの音声を使ってください。"),
    "too_long": ("音が長すぎます", "{name}の長さは{seconds:.0f}秒です。このデモで使える音は{limit:.0f}秒までです。"
                 "短く切るか、短く録音してからもう一度お試しください。"),
    "non_finite": ("音声データが壊れています", "{name}に不正なサンプル（非数または無限大）が含まれています。"
                   "録音または書き出しをやり直してください。"),
    "not_found": ("音がありません", "{name}：アップロードしたファイルが見つかりません。もう一度アップロードしてください。"),
    "expired": ("この音はもうありません", "音は解析後に削除しており、この音はもう覚えていません。"
                "もう一度録音するか、アップロードしてください。"),
    "invalid": ("音声データが使えません", "{name}は使えません：{detail}。"),
    "no_labels": ("ラベルがありません", "ラベルを1つ以上入力してください（1行に1つ、またはカンマ区切り）。"),
    "no_sound": ("音がありません", "先に音を録音するかアップロードしてください"
                 "（またはプロンプトを入力し、混ぜ具合をテキスト側に動かしてください）。"),
    "no_generator": ("絵の生成は使えません", "絵の生成は使えません：{reason}"),
    "still_loading": ("読み込み中です", "モデルを読み込んでいます（{stage}）。1分ほどしてからもう一度お試しください。"),
    "not_loaded": ("モデルを読み込めませんでした", "モデルを読み込めませんでした：{error}"),
}
